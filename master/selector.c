/*
 * Target selectors: parsed once into a flat list of terms, then matched
 * against each host of the inventory.  Grammar and meaning are in selector.h.
 *
 * A selector comes from an API client, so it is untrusted: its length and
 * term count are capped before anything is allocated, every character is
 * checked, and error messages never echo raw bytes back.
 */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "selector.h"
#include "store.h"

#define SEL_MAX_TERMS 256

enum term_kind {
	TERM_ALL,   /* every host */
	TERM_IDC,   /* arg is an IDC name */
	TERM_GROUP, /* arg is a group name */
	TERM_NAME,  /* arg is an exact host name: strcmp, no glob cost */
	TERM_GLOB,  /* arg is an fnmatch(3) pattern */
};

struct term {
	enum term_kind kind;
	bool neg;
	char *arg; /* NULL for TERM_ALL */
};

struct om_selector {
	struct term *terms;
	size_t nterms;
	bool has_pos; /* false: the positive side is "all" (only exclusions given) */
};

/*
 * Copies at most 64 bytes of s..s+n into out (size >= 64 * 4 + 4) as
 * printable ASCII, so an error message cannot carry control bytes or
 * escape sequences into a terminal or the console.
 */
static void
printable(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	size_t lim = n > 64 ? 64 : n;

	for (size_t i = 0; i < lim && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			snprintf(out + o, outlen - o, "\\x%02x", c);
			o += 4;
		}
	}
	if (n > lim && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Characters of host names (om_name_valid) plus the fnmatch metacharacters. */
static bool
is_pattern_char(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("._-*?[]!^", c) != NULL;
}

static bool
has_glob_meta(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '*' || s[i] == '?' || s[i] == '[')
			return true;
	return false;
}

/*
 * Parses one trimmed term t..t+n starting at 1-based position pos of the
 * selector into *out.
 */
static int
parse_term(const char *t, size_t n, size_t pos, struct term *out, char *err, size_t errlen)
{
	char shown[300];
	const char *colon;

	out->neg = false;
	out->arg = NULL;
	if (n > 0 && t[0] == '!') {
		out->neg = true;
		t++;
		n--;
		pos++;
		/* "! web-1" reads naturally, so blanks after the bang are allowed. */
		while (n > 0 && is_space(t[0])) {
			t++;
			n--;
			pos++;
		}
		if (n == 0) {
			om_seterr(err, errlen, "empty term after '!' at position %zu", pos);
			return OM_EINVAL;
		}
		if (t[0] == '!') {
			om_seterr(err, errlen, "double '!' at position %zu", pos);
			return OM_EINVAL;
		}
	}

	colon = memchr(t, ':', n);
	if (colon != NULL) {
		size_t plen = (size_t)(colon - t);
		const char *arg = colon + 1;
		size_t alen = n - plen - 1;
		const char *what;

		if (plen == 3 && memcmp(t, "idc", 3) == 0) {
			out->kind = TERM_IDC;
			what = "IDC";
		} else if (plen == 5 && memcmp(t, "group", 5) == 0) {
			out->kind = TERM_GROUP;
			what = "group";
		} else {
			printable(t, plen, shown, sizeof(shown));
			om_seterr(err, errlen, "unknown selector prefix '%s:' at position %zu",
			          shown, pos);
			return OM_EINVAL;
		}
		if (alen == 0) {
			om_seterr(err, errlen, "empty %s name after '%.*s:' at position %zu", what,
			          (int)plen, t, pos);
			return OM_EINVAL;
		}
		if (alen > OM_MAX_NAME) {
			om_seterr(err, errlen, "%s name longer than %d bytes at position %zu", what,
			          OM_MAX_NAME, pos + plen + 1);
			return OM_EINVAL;
		}
		out->arg = om_strndup(arg, alen);
		if (out->arg == NULL) {
			om_seterr(err, errlen, "out of memory");
			return OM_ENOMEM;
		}
		/* Stored names all pass om_name_valid, so anything else could never match. */
		if (!om_name_valid(out->arg)) {
			printable(arg, alen, shown, sizeof(shown));
			om_seterr(err, errlen, "invalid %s name '%s' at position %zu", what, shown,
			          pos + plen + 1);
			om_free(out->arg);
			out->arg = NULL;
			return OM_EINVAL;
		}
		return 0;
	}

	if (n == 3 && memcmp(t, "all", 3) == 0) {
		out->kind = TERM_ALL;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_pattern_char(t[i])) {
			printable(t + i, 1, shown, sizeof(shown));
			om_seterr(err, errlen, "invalid character '%s' at position %zu", shown,
			          pos + i);
			return OM_EINVAL;
		}
	}
	out->kind = has_glob_meta(t, n) ? TERM_GLOB : TERM_NAME;
	out->arg = om_strndup(t, n);
	if (out->arg == NULL) {
		om_seterr(err, errlen, "out of memory");
		return OM_ENOMEM;
	}
	return 0;
}

int
om_selector_parse(const char *s, struct om_selector **out, char *err, size_t errlen)
{
	struct om_selector *sel;
	size_t len, nterms = 1, start = 0;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || s == NULL) {
		om_seterr(err, errlen, "no selector");
		return OM_EINVAL;
	}
	*out = NULL;

	/* Caps first: nothing is allocated for an oversized selector. */
	len = strnlen(s, OM_MAX_TEXT + 1);
	if (len > OM_MAX_TEXT) {
		om_seterr(err, errlen, "selector longer than %d bytes", OM_MAX_TEXT);
		return OM_EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if (s[i] == ',')
			nterms++;
	if (nterms > SEL_MAX_TERMS) {
		om_seterr(err, errlen, "too many terms (%zu, at most %d)", nterms, SEL_MAX_TERMS);
		return OM_EINVAL;
	}
	{
		size_t i = 0;

		while (i < len && is_space(s[i]))
			i++;
		if (i == len) {
			om_seterr(err, errlen, "empty selector");
			return OM_EINVAL;
		}
	}

	sel = om_calloc(1, sizeof(*sel));
	if (sel == NULL || (sel->terms = om_calloc(nterms, sizeof(*sel->terms))) == NULL) {
		om_free(sel);
		om_seterr(err, errlen, "out of memory");
		return OM_ENOMEM;
	}

	for (size_t i = 0; i <= len; i++) {
		size_t first = start, a = start, b = i;

		if (i < len && s[i] != ',')
			continue;
		start = i + 1;
		while (a < b && is_space(s[a]))
			a++;
		while (b > a && is_space(s[b - 1]))
			b--;
		if (a == b) {
			/* 1-based position just after the comma (or the start) that opens it. */
			om_seterr(err, errlen, "empty term at position %zu", first + 1);
			rc = OM_EINVAL;
			goto fail;
		}
		rc = parse_term(s + a, b - a, a + 1, &sel->terms[sel->nterms], err, errlen);
		if (rc != 0)
			goto fail;
		if (!sel->terms[sel->nterms].neg)
			sel->has_pos = true;
		sel->nterms++;
	}
	*out = sel;
	return 0;

fail:
	om_selector_free(sel);
	return rc;
}

static bool
term_match(const struct term *t, const struct om_host *h)
{
	switch (t->kind) {
	case TERM_ALL:
		return true;
	case TERM_IDC:
		return h->idc != NULL && strcmp(h->idc, t->arg) == 0;
	case TERM_GROUP:
		if (h->groups == NULL)
			return false;
		for (uint32_t i = 0; i < h->ngroups; i++)
			if (h->groups[i] != NULL && strcmp(h->groups[i], t->arg) == 0)
				return true;
		return false;
	case TERM_NAME:
		return h->name != NULL && strcmp(h->name, t->arg) == 0;
	case TERM_GLOB:
		return h->name != NULL && fnmatch(t->arg, h->name, 0) == 0;
	}
	return false;
}

bool
om_selector_match(const struct om_selector *sel, const struct om_host *h)
{
	bool pos;

	if (sel == NULL || h == NULL)
		return false;
	/* Only exclusions: start from every host. */
	pos = !sel->has_pos;
	for (size_t i = 0; i < sel->nterms; i++) {
		const struct term *t = &sel->terms[i];

		if (t->neg) {
			if (term_match(t, h))
				return false;
		} else if (!pos && term_match(t, h)) {
			pos = true;
		}
	}
	return pos;
}

void
om_selector_free(struct om_selector *sel)
{
	if (sel == NULL)
		return;
	for (size_t i = 0; i < sel->nterms; i++)
		om_free(sel->terms[i].arg);
	om_free(sel->terms);
	om_free(sel);
}

bool
om_selector_filter(const struct om_selector *sel, struct om_host_filter *f)
{
	const char **v;
	size_t i;

	if (sel == NULL || !sel->has_pos)
		return false;
	for (i = 0; i < sel->nterms; i++)
		if (!sel->terms[i].neg &&
		    (sel->terms[i].kind == TERM_ALL || sel->terms[i].kind == TERM_GLOB))
			return false;
	/* One block, three slices: names, idcs, groups. */
	if ((v = om_calloc(sel->nterms * 3, sizeof(*v))) == NULL)
		return false;
	memset(f, 0, sizeof(*f));
	f->names = v;
	f->idcs = v + sel->nterms;
	f->groups = v + 2 * sel->nterms;
	for (i = 0; i < sel->nterms; i++) {
		const struct term *t = &sel->terms[i];

		if (t->neg)
			continue;
		if (t->kind == TERM_NAME)
			f->names[f->nnames++] = t->arg;
		else if (t->kind == TERM_IDC)
			f->idcs[f->nidcs++] = t->arg;
		else if (t->kind == TERM_GROUP)
			f->groups[f->ngroups++] = t->arg;
	}
	return true;
}

void
om_selector_filter_release(struct om_host_filter *f)
{
	if (f == NULL)
		return;
	om_free(f->names); /* the block of all three */
	memset(f, 0, sizeof(*f));
}
