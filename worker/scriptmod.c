/*
 * Script modules (see scriptmod.h): a manifest turned into a struct
 * om_plugin.  The executable is uploaded under its content hash, so an
 * updated script gets a new remote name and a host never runs a stale or
 * half-written copy: the upload goes to a temp name and is renamed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "om/base.h"
#include "om/msg.h"
#include "om/params.h"
#include "scriptmod.h"

#define MAX_NAME     64
#define MAX_VERSION  32
#define MAX_DESC     1024
#define MAX_EXE_NAME 255

struct om_scriptmod {
	struct om_plugin desc; /* first: the registry hands out &desc */
	const struct om_host_api *api;
	char *name, *version, *description;
	struct om_plugin_param *params; /* om_params_schema_parse */
	size_t nparams;
	uint8_t *exe; /* the bytes hashed at load: what is uploaded matches the hash */
	size_t exe_len;
	char sha[65];
	char rel[128]; /* ".omserver/modules/<sha256>-<name>", relative to $HOME */
};

/* One host's run. */
struct run {
	struct om_scriptmod *m;
	char *path, *qpath; /* absolute remote path of the executable, and quoted */
	char *tmp, *qtmp;
	char *input; /* the parameters as JSON, alloc() */
	size_t input_len;
};

/* --- host side ------------------------------------------------------------------------ */

static char *fmt_alloc(const struct om_host_api *api, struct om_host_ctx *h, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static char *
fmt_alloc(const struct om_host_api *api, struct om_host_ctx *h, const char *fmt, ...)
{
	va_list ap;
	char *out;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (out = api->alloc(h, (size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return out;
}

static char *
quote_alloc(const struct om_host_api *api, struct om_host_ctx *h, const char *s)
{
	size_t cap = strlen(s) * 4 + 3;
	char *out = api->alloc(h, cap);

	if (out == NULL || api->quote(s, out, cap) < 0)
		return NULL;
	return out;
}

static void fail(const struct om_host_api *api, struct om_host_ctx *h, int code, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
static void
fail(const struct om_host_api *api, struct om_host_ctx *h, int code, const char *fmt, ...)
{
	char reason[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	api->finish(h, OM_PLUGIN_FAILED, code, reason);
}

int
om_scriptmod_parse_result(const uint8_t *out, size_t len, struct om_scriptmod_result *res,
                          char *err, size_t errlen)
{
	json_error_t jerr;
	const char *msg;
	json_t *o;
	char *text;

	memset(res, 0, sizeof(*res));
	if (out == NULL)
		len = 0;
	o = json_loadb(out ? (const char *)out : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		om_seterr(err, errlen, "%s", o ? "not an object" : jerr.text);
		json_decref(o);
		return OM_EPROTO;
	}
	res->changed = json_is_true(json_object_get(o, "changed"));
	res->failed = json_is_true(json_object_get(o, "failed"));
	msg = json_string_value(json_object_get(o, "msg"));
	/* jansson allocates with its own allocator; the caller frees with om_free */
	if ((text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL ||
	    (res->json = om_strdup(text)) == NULL ||
	    (msg != NULL && (res->msg = om_strdup(msg)) == NULL)) {
		free(text);
		json_decref(o);
		om_scriptmod_result_free(res);
		om_seterr(err, errlen, "out of memory");
		return OM_ENOMEM;
	}
	free(text);
	json_decref(o);
	return 0;
}

void
om_scriptmod_result_free(struct om_scriptmod_result *res)
{
	if (res == NULL)
		return;
	om_free(res->json);
	om_free(res->msg);
	memset(res, 0, sizeof(*res));
}

static void
ran(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct run *r = arg;
	const struct om_host_api *api = r->m->api;
	const char *name = r->m->name;
	struct om_scriptmod_result sr;
	char why[256];

	if (rc < 0) {
		fail(api, h, -1, "module '%s' did not run: %s", name, om_strerror(rc));
		return;
	}
	if (res->err_len > 0)
		api->emit(h, OM_PLUGIN_STDERR, res->err, res->err_len);
	if (res->truncated) {
		fail(api, h, res->exit_status, "module '%s' printed more than %d bytes", name,
		     OM_SCRIPTMOD_MAX_OUTPUT);
		return;
	}
	rc = om_scriptmod_parse_result(res->out, res->out_len, &sr, why, sizeof(why));
	if (rc == OM_EPROTO) {
		fail(api, h, res->exit_status, "module '%s' returned invalid JSON: %s", name, why);
		return;
	}
	if (rc != 0 || api->set_result(h, sr.json, sr.changed) < 0) {
		fail(api, h, -1, "module '%s': result not recorded", name);
	} else if (sr.failed) {
		fail(api, h, res->exit_status, "%s", sr.msg ? sr.msg : "module failed");
	} else if (res->exit_status != 0) {
		fail(api, h, res->exit_status, "module '%s' exited with status %d%s%s", name,
		     res->exit_status, sr.msg ? ": " : "", sr.msg ? sr.msg : "");
	} else {
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
	}
	om_scriptmod_result_free(&sr);
}

static void
run_module(struct run *r, struct om_host_ctx *h)
{
	const struct om_host_api *api = r->m->api;
	int rc;

	/* Not NO_BECOME: the module itself runs as the task asked. */
	if ((rc = api->exec(h, r->qpath, NULL, r->input, r->input_len, OM_EXEC_CAPTURE,
	                    OM_SCRIPTMOD_MAX_OUTPUT, ran, r)) < 0)
		fail(api, h, -1, "module '%s' did not start: %s", r->m->name, om_strerror(rc));
}

static void
installed(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct run *r = arg;

	if (rc < 0 || res->exit_status != 0) {
		fail(r->m->api, h, rc < 0 ? -1 : res->exit_status,
		     "module '%s': installing '%s' failed", r->m->name, r->path);
		return;
	}
	run_module(r, h);
}

static void
cleaned(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct run *r = arg;

	(void)rc;
	(void)res;
	fail(r->m->api, h, -1, "module '%s': upload to '%s' failed", r->m->name, r->tmp);
}

static void
uploaded(struct om_host_ctx *h, void *arg, int rc, const uint8_t *data, size_t len)
{
	struct run *r = arg;
	const struct om_host_api *api = r->m->api;
	char *cmd;

	(void)data;
	(void)len;
	if (rc < 0) {
		cmd = fmt_alloc(api, h, "rm -f %s", r->qtmp);
		if (cmd == NULL ||
		    api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
		              cleaned, r) < 0)
			fail(api, h, -1, "module '%s': upload failed: %s", r->m->name,
			     om_strerror(rc));
		return;
	}
	if ((cmd = fmt_alloc(api, h, "mv -f %s %s", r->qtmp, r->qpath)) == NULL) {
		fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
	                    installed, r)) < 0)
		fail(api, h, -1, "module '%s': mv did not start: %s", r->m->name, om_strerror(rc));
}

/* "HOME\npresent\n" or "HOME\nmissing\n" from the probe. */
static void
probed(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct run *r = arg;
	struct om_scriptmod *m = r->m;
	const struct om_host_api *api = m->api;
	const char *out = (const char *)res->out, *nl;
	char home[1024], hex[17];
	uint8_t rnd[8];
	size_t n;
	int present;

	if (rc < 0) {
		fail(api, h, -1, "module '%s': probe did not run: %s", m->name, om_strerror(rc));
		return;
	}
	if (res->exit_status != 0 || out == NULL ||
	    (nl = memchr(out, '\n', res->out_len)) == NULL) {
		fail(api, h, res->exit_status, "module '%s': cannot prepare ~/.omserver/modules",
		     m->name);
		return;
	}
	n = (size_t)(nl - out);
	if (n == 0 || n >= sizeof(home) || out[0] != '/' || memchr(out, '\0', n) != NULL) {
		fail(api, h, -1, "module '%s': the login user has no usable $HOME", m->name);
		return;
	}
	memcpy(home, out, n);
	home[n] = '\0';
	present = res->out_len - n - 1 >= 7 && memcmp(nl + 1, "present", 7) == 0;
	if ((r->path = fmt_alloc(api, h, "%s/%s", home, m->rel)) == NULL ||
	    (r->qpath = quote_alloc(api, h, r->path)) == NULL) {
		fail(api, h, -1, "out of memory");
		return;
	}
	if (present) {
		run_module(r, h);
		return;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		fail(api, h, -1, "module '%s': no randomness for a temp name", m->name);
		return;
	}
	om_hex_encode(rnd, sizeof(rnd), hex);
	if ((r->tmp = fmt_alloc(api, h, "%s.tmp.%s", r->path, hex)) == NULL ||
	    (r->qtmp = quote_alloc(api, h, r->tmp)) == NULL) {
		fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->upload(h, r->tmp, m->exe, m->exe_len, 0700, uploaded, r)) < 0)
		uploaded(h, r, rc, NULL, 0);
}

/* The parameters as one JSON object, typed by the schema. */
static char *
params_json(const struct om_scriptmod *m, struct om_host_ctx *h, size_t *len)
{
	const struct om_host_api *api = m->api;
	json_t *o = json_object(), *v;
	char *text, *out = NULL;
	bool ok;

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < m->nparams; i++) {
		const struct om_plugin_param *p = &m->params[i];
		const char *s = api->param(h, p->name);
		long long iv;
		char *end;

		if (s == NULL)
			continue;
		v = NULL;
		if (strcmp(p->type, "int") == 0) {
			iv = strtoll(s, &end, 10);
			if (*s != '\0' && *end == '\0')
				v = json_integer(iv);
		} else if (strcmp(p->type, "bool") == 0) {
			bool b = om_param_bool(s, &ok);

			if (ok)
				v = json_boolean(b);
		}
		if (v == NULL)
			v = json_string(s);
		if (v == NULL || json_object_set_new(o, p->name, v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (text == NULL)
		return NULL;
	*len = strlen(text);
	/* alloc(): the exec may read stdin after this call returns */
	if ((out = api->alloc(h, *len + 1)) != NULL)
		memcpy(out, text, *len + 1);
	free(text);
	return out;
}

static int
script_host_start(void *state, struct om_host_ctx *h)
{
	struct om_scriptmod *m = state;
	const struct om_host_api *api = m->api;
	char *qrel, *cmd;
	struct run *r;
	int rc;

	if ((r = api->alloc(h, sizeof(*r))) == NULL) {
		fail(api, h, -1, "out of memory");
		return OM_ENOMEM;
	}
	memset(r, 0, sizeof(*r));
	r->m = m;
	if ((r->input = params_json(m, h, &r->input_len)) == NULL ||
	    (qrel = quote_alloc(api, h, m->rel)) == NULL) {
		fail(api, h, -1, "out of memory");
		return OM_ENOMEM;
	}
	/*
	 * As the login user (NO_BECOME): SFTP writes as that user, so the cache
	 * lives in its home; the absolute path printed here lets the module run
	 * under become too.
	 */
	cmd = fmt_alloc(api, h,
	                "printf '%%s\\n' \"$HOME\"\n"
	                "if test -x \"$HOME\"/%s; then echo present; else\n"
	                "  mkdir -p \"$HOME\"/.omserver/modules && chmod 700 \"$HOME\"/.omserver "
	                "\"$HOME\"/.omserver/modules && echo missing\n"
	                "fi",
	                qrel);
	if (cmd == NULL) {
		fail(api, h, -1, "out of memory");
		return OM_ENOMEM;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 8192,
	                    probed, r)) < 0) {
		fail(api, h, -1, "module '%s': probe did not start: %s", m->name, om_strerror(rc));
		return rc;
	}
	return 0;
}

/* --- loading ---------------------------------------------------------------------------- */

static bool
printable(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= max || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* A file name in the manifest's directory: no path, no dot names, nothing odd. */
static bool
exe_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_EXE_NAME || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '+'))
			return false;
	}
	return strstr(s, "..") == NULL;
}

static int
dup_field(json_t *o, const char *key, bool required, size_t max, char **out, const char *file,
          char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (v == NULL && !required)
		return 0;
	if ((s = json_string_value(v)) == NULL || (required && *s == '\0')) {
		om_seterr(err, errlen, "manifest '%s': \"%s\" must be a %sstring", file, key,
		          required ? "non-empty " : "");
		return OM_EINVAL;
	}
	if (!printable(s, max)) {
		om_seterr(err, errlen, "manifest '%s': \"%s\" is longer than %zu bytes or not text",
		          file, key, max);
		return OM_EINVAL;
	}
	return (*out = om_strdup(s)) != NULL ? 0 : OM_ENOMEM;
}

int
om_scriptmod_load(const char *dir, const char *file, const struct om_host_api *api,
                  struct om_scriptmod **out, char *err, size_t errlen)
{
	struct om_scriptmod *m;
	char path[4096], perr[256], *exe = NULL, *ptext = NULL;
	uint8_t *text = NULL, md[32];
	size_t len, flen = strlen(file);
	json_error_t jerr;
	json_t *o = NULL, *params, *idem;
	int rc;

	*out = NULL;
	if (flen <= 5 || strcmp(file + flen - 5, ".json") != 0 || strchr(file, '/') != NULL) {
		om_seterr(err, errlen, "manifest '%s': not a <name>.json file name", file);
		return OM_EINVAL;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path)) {
		om_seterr(err, errlen, "manifest '%s': path too long", file);
		return OM_EINVAL;
	}
	if ((rc = om_read_file(path, OM_SCRIPTMOD_MAX_MANIFEST, &text, &len)) != 0) {
		om_seterr(err, errlen, "manifest '%s': %s", file,
		          rc == OM_EMSGSIZE ? "larger than 64 KiB" : om_strerror(rc));
		return rc;
	}
	o = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
	om_free(text);
	if (!json_is_object(o)) {
		om_seterr(err, errlen, "manifest '%s': %s", file,
		          o ? "not a JSON object" : jerr.text);
		json_decref(o);
		return OM_EINVAL;
	}
	if ((m = om_calloc(1, sizeof(*m))) == NULL) {
		json_decref(o);
		return OM_ENOMEM;
	}
	m->api = api;
	if ((rc = dup_field(o, "name", true, MAX_NAME, &m->name, file, err, errlen)) != 0 ||
	    (rc = dup_field(o, "version", true, MAX_VERSION, &m->version, file, err, errlen)) !=
	            0 ||
	    (rc = dup_field(o, "description", false, MAX_DESC, &m->description, file, err,
	                    errlen)) != 0 ||
	    (rc = dup_field(o, "executable", true, MAX_EXE_NAME, &exe, file, err, errlen)) != 0)
		goto fail;
	rc = OM_EINVAL;
	/* The file name is the module's name: what an operator sees is what runs. */
	if (!om_name_valid(m->name) || strlen(m->name) != flen - 5 ||
	    memcmp(m->name, file, flen - 5) != 0) {
		om_seterr(err, errlen,
		          "manifest '%s': \"name\" must be a valid name equal to the file's", file);
		goto fail;
	}
	if (!exe_name_ok(exe)) {
		om_seterr(err, errlen,
		          "manifest '%s': \"executable\" must be a file name in the same directory "
		          "(no '/', no '..')",
		          file);
		goto fail;
	}
	/* Only a JSON boolean: "yes" or 1 may be a typo for a promise nobody made. */
	idem = json_object_get(o, "idempotent");
	if (idem != NULL && !json_is_boolean(idem)) {
		om_seterr(err, errlen, "manifest '%s': \"idempotent\" must be true or false", file);
		goto fail;
	}
	params = json_object_get(o, "params");
	if (params != NULL && !json_is_array(params)) {
		om_seterr(err, errlen, "manifest '%s': \"params\" must be an array", file);
		goto fail;
	}
	if (params != NULL) {
		if ((ptext = json_dumps(params, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
			rc = OM_ENOMEM;
			goto fail;
		}
		rc = om_params_schema_parse(ptext, &m->params, &m->nparams, perr, sizeof(perr));
		free(ptext);
		if (rc != 0) {
			om_seterr(err, errlen, "manifest '%s': params: %s", file, perr);
			goto fail;
		}
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, exe) >= sizeof(path)) {
		om_seterr(err, errlen, "manifest '%s': path too long", file);
		goto fail;
	}
	if ((rc = om_read_file(path, OM_SCRIPTMOD_MAX_EXE, &m->exe, &m->exe_len)) != 0) {
		om_seterr(err, errlen, "manifest '%s': executable '%s': %s", file, exe,
		          rc == OM_EMSGSIZE ? "larger than 8 MiB" : om_strerror(rc));
		goto fail;
	}
	if (EVP_Digest(m->exe, m->exe_len, md, NULL, EVP_sha256(), NULL) != 1) {
		om_seterr(err, errlen, "manifest '%s': sha256 failed", file);
		rc = OM_EIO;
		goto fail;
	}
	om_hex_encode(md, sizeof(md), m->sha);
	snprintf(m->rel, sizeof(m->rel), ".omserver/modules/%s-%s", m->sha, m->name);
	m->desc = (struct om_plugin){
	        .magic = OM_PLUGIN_MAGIC,
	        .abi_major = OM_PLUGIN_ABI_MAJOR,
	        .abi_minor = OM_PLUGIN_ABI_MINOR,
	        .struct_size = sizeof(struct om_plugin),
	        .name = m->name,
	        .version = m->version,
	        .description = m->description,
	        .params = m->params,
	        .nparams = m->nparams,
	        .host_start = script_host_start,
	        .flags = json_is_true(idem) ? OM_PLUGIN_IDEMPOTENT : 0,
	};
	om_free(exe);
	json_decref(o);
	*out = m;
	return 0;
fail:
	om_free(exe);
	json_decref(o);
	om_scriptmod_free(m);
	return rc;
}

const struct om_plugin *
om_scriptmod_plugin(const struct om_scriptmod *m)
{
	return &m->desc;
}

const char *
om_scriptmod_sha256(const struct om_scriptmod *m)
{
	return m->sha;
}

void
om_scriptmod_free(struct om_scriptmod *m)
{
	if (m == NULL)
		return;
	om_params_schema_free(m->params, m->nparams);
	om_free(m->exe);
	om_free(m->name);
	om_free(m->version);
	om_free(m->description);
	om_free(m);
}
