// Form helpers shared by the pages: comma lists, a field's error under the
// field (the API's 400 answers name it in "field"), "not available yet" for
// routes the server does not have.
import {setText} from './dom.js';

// "a, b,,c" -> ['a', 'b', 'c']
export function splitList(s) {
  return String(s || '').split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

// Clears the errors shown by showFieldError.
export function clearErrors(form, summary) {
  for (const el of form.querySelectorAll('.field-error[data-field]')) setText(el, '');
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  if (summary) setText(summary, '');
}

// Shows an API error: under the field it names (an element
// .field-error[data-field=F] inside the field's label), else in summary.
export function showFieldError(form, e, summary) {
  const f = e && e.field;
  const el = f ? form.querySelector(`.field-error[data-field="${CSS.escape(f)}"]`) : null;
  if (el) {
    setText(el, e.message);
    const input = el.parentElement && el.parentElement.querySelector('input,select,textarea');
    if (input) { input.classList.add('invalid'); input.focus(); }
  }
  if (summary) {
    if (el) setText(summary, ''); // said under the field
    else if (e && e.missing) setText(summary, `Not available yet: the server does not offer ${e.path || 'this'}.`);
    else if (e && e.status === 403) setText(summary, 'Your role does not allow this: ' + e.message);
    else setText(summary, (f ? `${f}: ` : '') + ((e && e.message) || String(e)));
  }
}
