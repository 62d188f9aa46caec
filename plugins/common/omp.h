/*
 * Helpers shared by the built-in modules.  Header-only and built from the
 * SDK header alone, so a built-in module stays buildable exactly like a
 * third-party one: nothing here links against the worker.
 *
 * Everything is static inline so a module that uses only part of it does
 * not trip -Wunused-function.
 */
#ifndef OMP_COMMON_H
#define OMP_COMMON_H

/* clock_gettime under -std=c11; include this header first. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omserver/plugin.h>

/*
 * printf into memory from the host's alloc(): freed by the worker after
 * finish(), so the command strings built for exec need no cleanup path.
 * NULL when out of memory.
 */
static inline char *omp_fmt(const struct om_host_api *api, struct om_host_ctx *h, const char *fmt,
                            ...) OM_PLUGIN_PRINTF(3, 4);
static inline char *
omp_fmt(const struct om_host_api *api, struct om_host_ctx *h, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *out;

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

/*
 * s as one sh word, through the host's audited quote() (the only way a
 * parameter may reach shell text).  Memory from alloc(); NULL on failure.
 */
static inline char *
omp_quote(const struct om_host_api *api, struct om_host_ctx *h, const char *s)
{
	size_t cap = strlen(s) * 4 + 3; /* every byte a ' becomes '\'' */
	char *out = api->alloc(h, cap);

	if (out == NULL || api->quote(s, out, cap) < 0)
		return NULL;
	return out;
}

/* Ends the host as failed with a formatted reason. */
static inline void omp_fail(const struct om_host_api *api, struct om_host_ctx *h, int exit_code,
                            const char *fmt, ...) OM_PLUGIN_PRINTF(4, 5);
static inline void
omp_fail(const struct om_host_api *api, struct om_host_ctx *h, int exit_code, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	api->finish(h, OM_PLUGIN_FAILED, exit_code, reason);
}

/* Why an exec did not produce a result, for a failure reason. */
static inline const char *
omp_strerror(int rc)
{
	switch (rc) {
	case OM_PLUGIN_ENOMEM:
		return "out of memory";
	case OM_PLUGIN_ETIMEDOUT:
		return "timed out";
	case OM_PLUGIN_ECANCELED:
		return "cancelled";
	case OM_PLUGIN_ERANGE:
		return "too large";
	case OM_PLUGIN_ENOTFOUND:
		return "not found";
	case OM_PLUGIN_EPERM:
		return "permission denied";
	default:
		return "input/output error";
	}
}

/* --- a growing JSON text (plain malloc: set_result copies it) ------------- */

struct omp_json {
	char *p;
	size_t len, cap;
	int err; /* sticky */
};

static inline void
omp_json_raw(struct omp_json *j, const char *s, size_t n)
{
	char *np;
	size_t ncap;

	if (j->err)
		return;
	if (j->len + n + 1 > j->cap) {
		ncap = j->cap ? j->cap : 256;
		while (ncap < j->len + n + 1)
			ncap *= 2;
		if ((np = realloc(j->p, ncap)) == NULL) {
			j->err = 1;
			return;
		}
		j->p = np;
		j->cap = ncap;
	}
	memcpy(j->p + j->len, s, n);
	j->len += n;
	j->p[j->len] = '\0';
}

static inline void
omp_json_lit(struct omp_json *j, const char *s)
{
	omp_json_raw(j, s, strlen(s));
}

/* s (n bytes) as a JSON string; bytes that are not UTF-8 pass unchanged. */
static inline void
omp_json_strn(struct omp_json *j, const char *s, size_t n)
{
	char esc[8];
	size_t i;

	omp_json_raw(j, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			omp_json_raw(j, esc, 2);
		} else if (c == '\n') {
			omp_json_raw(j, "\\n", 2);
		} else if (c == '\t') {
			omp_json_raw(j, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			omp_json_raw(j, esc, 6);
		} else {
			omp_json_raw(j, s + i, 1);
		}
	}
	omp_json_raw(j, "\"", 1);
}

static inline void
omp_json_str(struct omp_json *j, const char *s)
{
	if (s == NULL)
		omp_json_lit(j, "null");
	else
		omp_json_strn(j, s, strlen(s));
}

/* "key": (the value follows); first says whether a comma is needed. */
static inline void
omp_json_key(struct omp_json *j, int *first, const char *key)
{
	if (!*first)
		omp_json_raw(j, ",", 1);
	*first = 0;
	omp_json_str(j, key);
	omp_json_raw(j, ":", 1);
}

static inline void
omp_json_kstr(struct omp_json *j, int *first, const char *key, const char *val)
{
	omp_json_key(j, first, key);
	omp_json_str(j, val);
}

static inline void
omp_json_kint(struct omp_json *j, int *first, const char *key, long long val)
{
	char num[32];

	omp_json_key(j, first, key);
	snprintf(num, sizeof(num), "%lld", val);
	omp_json_lit(j, num);
}

static inline void
omp_json_kbool(struct omp_json *j, int *first, const char *key, int val)
{
	omp_json_key(j, first, key);
	omp_json_lit(j, val ? "true" : "false");
}

/* Hands the text to set_result (which copies) and frees it; 0 or a negative code. */
static inline int
omp_json_result(const struct om_host_api *api, struct om_host_ctx *h, struct omp_json *j,
                int changed)
{
	int rc = j->err ? OM_PLUGIN_ENOMEM : api->set_result(h, j->p, changed);

	free(j->p);
	j->p = NULL;
	j->len = j->cap = 0;
	return rc;
}

/* --- random names ----------------------------------------------------------- */

/*
 * n hex digits for temp-file names.  They only keep two runs apart, they
 * guard no secret, so a seeded xorshift is enough and needs no blocking read.
 */
/*
 * Ends a host from a command's exit: ok for status 0, failed otherwise
 * (or when it was killed or could not run), with {"rc": N} as the result.
 * what names the command in the reasons ("command", "script").
 */
static inline void
omp_finish_exit(const struct om_host_api *api, struct om_host_ctx *h, const char *what, int rc,
                const struct om_exec_result *res)
{
	struct omp_json j = {0};
	int first = 1;

	if (rc < 0) {
		omp_fail(api, h, -1, "%s did not run: %s", what, omp_strerror(rc));
		return;
	}
	if (res->exit_status < 0) {
		omp_fail(api, h, -1, "killed by signal %s", res->signal ? res->signal : "?");
		return;
	}
	omp_json_lit(&j, "{");
	omp_json_kint(&j, &first, "rc", res->exit_status);
	omp_json_lit(&j, "}");
	omp_json_result(api, h, &j, res->exit_status == 0);
	if (res->exit_status != 0)
		omp_fail(api, h, res->exit_status, "exit status %d", res->exit_status);
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

/* An om_exec_cb for a command whose exit decides the host; arg is the api. */
static inline void
omp_exec_done(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	omp_finish_exit(arg, h, "command", rc, res);
}

static inline void
omp_rand_hex(char *out, size_t n)
{
	static uint64_t s;
	struct timespec ts;
	size_t i;

	if (s == 0) {
		clock_gettime(CLOCK_REALTIME, &ts);
		s = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts;
		if (s == 0)
			s = 0x9e3779b97f4a7c15ull;
	}
	for (i = 0; i < n; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		out[i] = "0123456789abcdef"[s & 15];
	}
	out[n] = '\0';
}

/* Last path component (after the last '/'); s itself when there is none. */
static inline const char *
omp_basename(const char *s)
{
	const char *slash = strrchr(s, '/');

	return slash ? slash + 1 : s;
}

/*
 * The path mktemp printed (out, n bytes) for the template prefix followed
 * by X's, into *path (alloc() memory).  Only what mktemp can have made from
 * the template is trusted: the path is then written over SFTP and removed
 * by later commands.  0, OM_PLUGIN_EINVAL for anything else printed, or
 * OM_PLUGIN_ENOMEM.
 */
static inline int
omp_mktemp_path(const struct om_host_api *api, struct om_host_ctx *h, const uint8_t *out, size_t n,
                const char *prefix, char **path)
{
	size_t plen = strlen(prefix), i;

	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	if (n <= plen || n > 128 || memcmp(out, prefix, plen) != 0)
		return OM_PLUGIN_EINVAL;
	for (i = plen; i < n; i++) {
		unsigned char c = out[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return OM_PLUGIN_EINVAL;
	}
	if ((*path = api->alloc(h, n + 1)) == NULL)
		return OM_PLUGIN_ENOMEM;
	memcpy(*path, out, n);
	(*path)[n] = '\0';
	return 0;
}

/*
 * The end of a mktemp exec: its name in *path, or the host failed with the
 * reason (it did not run, it failed, it printed something unexpected).
 * 0, or a negative code after the host was failed.
 */
static inline int
omp_mktemp_done(const struct om_host_api *api, struct om_host_ctx *h, int rc,
                const struct om_exec_result *res, const char *prefix, char **path)
{
	if (rc < 0) {
		omp_fail(api, h, -1, "mktemp did not run: %s", omp_strerror(rc));
		return rc;
	}
	if (res->exit_status != 0 || res->out == NULL) {
		omp_fail(api, h, -1, "mktemp failed with exit status %d", res->exit_status);
		return OM_PLUGIN_EIO;
	}
	if ((rc = omp_mktemp_path(api, h, res->out, res->out_len, prefix, path)) < 0)
		omp_fail(api, h, -1, "%s",
		         rc == OM_PLUGIN_ENOMEM ? "out of memory"
		                                : "mktemp printed an unexpected name");
	return rc;
}

/* A decimal size_t, the whole string; -1 otherwise. */
static inline int
omp_parse_size(const char *s, size_t *out)
{
	unsigned long long v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (~0ull - 9) / 10)
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v > (size_t)-1)
		return -1;
	*out = (size_t)v;
	return 0;
}

/* --- module boilerplate --------------------------------------------------- */

/*
 * The init() every built-in module uses: the host table becomes the state
 * passed to host_start.  Refuses a worker whose table lacks functions ABI 1
 * promises.
 */
static inline int
omp_init(const struct om_host_api *api, void **state)
{
	if (api == NULL || api->api_version < 1 ||
	    api->struct_size < offsetof(struct om_host_api, spare))
		return OM_PLUGIN_EINVAL;
	*state = (void *)(uintptr_t)api;
	return 0;
}

/* Parameter text, treating "" like absent: sh would get an empty word either way. */
static inline const char *
omp_param(const struct om_host_api *api, struct om_host_ctx *h, const char *name)
{
	const char *v = api->param(h, name);

	return v != NULL && *v != '\0' ? v : NULL;
}

#define OMP_MAX_WORDS 256

/*
 * Splits s into words with sh's quoting rules ('...', "..." with \ escapes,
 * backslash) but no expansion of any kind: "$HOME" stays the five bytes
 * $HOME.  Memory from alloc(); *argv is NULL-terminated.  Returns the
 * number of words, or -1 with a reason in *why.
 */
static inline int
omp_split(const struct om_host_api *api, struct om_host_ctx *h, const char *s, char ***argv,
          const char **why)
{
	size_t len = strlen(s), nw = 0;
	char *buf, *o, **v;
	int in_word = 0;

	if ((buf = api->alloc(h, len + 1)) == NULL ||
	    (v = api->alloc(h, sizeof(*v) * (OMP_MAX_WORDS + 1))) == NULL) {
		*why = "out of memory";
		return -1;
	}
	o = buf;
	for (;;) {
		char c = *s;

		if (c == '\0' || ((c == ' ' || c == '\t' || c == '\n') && in_word)) {
			if (in_word) {
				*o++ = '\0';
				in_word = 0;
			}
			if (c == '\0')
				break;
			s++;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n') {
			s++;
			continue;
		}
		if (c == '\\' && s[1] == '\n' && !in_word) { /* a continuation starts no word */
			s += 2;
			continue;
		}
		if (!in_word) {
			if (nw == OMP_MAX_WORDS) {
				*why = "too many words";
				return -1;
			}
			v[nw++] = o;
			in_word = 1;
		}
		s++;
		if (c == '\'') {
			while (*s != '\'' && *s != '\0')
				*o++ = *s++;
			if (*s == '\0') {
				*why = "unterminated single quote";
				return -1;
			}
			s++;
		} else if (c == '"') {
			while (*s != '"' && *s != '\0') {
				if (*s == '\\' && s[1] != '\0' &&
				    strchr("$`\"\\\n", s[1]) != NULL) {
					if (s[1] != '\n')
						*o++ = s[1];
					s += 2;
				} else {
					*o++ = *s++;
				}
			}
			if (*s == '\0') {
				*why = "unterminated double quote";
				return -1;
			}
			s++;
		} else if (c == '\\') {
			if (*s == '\0') {
				*why = "trailing backslash";
				return -1;
			}
			if (*s != '\n')
				*o++ = *s;
			s++;
		} else {
			*o++ = c;
		}
	}
	v[nw] = NULL;
	*argv = v;
	return (int)nw;
}

#endif
