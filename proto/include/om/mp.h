/*
 * msgpack: a writer on a bounded om_buf (msgpack-c's packer does the
 * encoding) and a strict reader for untrusted bytes.
 *
 * The reader never hands bytes to msgpack-c's unpacker: every header is read
 * by hand, every declared length or element count is checked against the
 * bytes that remain before anything is allocated, nesting is capped, and
 * errors are sticky (r->err), so a decoder can read field after field and
 * check once.  Strings and bins are returned as pointers into the input:
 * the caller does not free them, they live as long as the input buffer.
 */
#ifndef OM_MP_H
#define OM_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/base.h"

#define OM_MP_MAX_DEPTH 16

/* Writer: each call appends to b; failures are sticky in b->err. */
void om_mpw_map(struct om_buf *b, uint32_t n);
void om_mpw_array(struct om_buf *b, uint32_t n);
void om_mpw_str(struct om_buf *b, const char *s, size_t n);
void om_mpw_cstr(struct om_buf *b, const char *s); /* NULL writes nil */
void om_mpw_bin(struct om_buf *b, const void *p, size_t n);
void om_mpw_uint(struct om_buf *b, uint64_t v);
void om_mpw_int(struct om_buf *b, int64_t v);
void om_mpw_bool(struct om_buf *b, bool v);
void om_mpw_nil(struct om_buf *b);

enum om_mp_type {
	OM_MP_NONE, /* end of input */
	OM_MP_NIL,
	OM_MP_BOOL,
	OM_MP_UINT,
	OM_MP_INT, /* negative */
	OM_MP_FLOAT,
	OM_MP_STR,
	OM_MP_BIN,
	OM_MP_ARRAY,
	OM_MP_MAP,
	OM_MP_EXT,
	OM_MP_INVALID, /* 0xc1 */
};

struct om_mpr {
	const uint8_t *p;   /* next byte */
	const uint8_t *end; /* one past the last byte */
	int err;            /* sticky first error */
};

void om_mpr_init(struct om_mpr *r, const void *data, size_t n);
/* Type of the next object without consuming it. */
enum om_mp_type om_mpr_peek(const struct om_mpr *r);

/* Each returns 0 or a negative code and sets r->err; on error nothing is consumed. */
int om_mpr_map(struct om_mpr *r, uint32_t *n);   /* n <= remaining / 2 */
int om_mpr_array(struct om_mpr *r, uint32_t *n); /* n <= remaining */
int om_mpr_str(struct om_mpr *r, const char **s, uint32_t *n);
int om_mpr_bin(struct om_mpr *r, const uint8_t **p, uint32_t *n); /* bin or str */
int om_mpr_uint(struct om_mpr *r, uint64_t *v);                   /* non-negative ints */
int om_mpr_int(struct om_mpr *r, int64_t *v);                     /* any int in range */
int om_mpr_bool(struct om_mpr *r, bool *v);
int om_mpr_nil(struct om_mpr *r);
/* Skips one whole object of any type, nesting capped at OM_MP_MAX_DEPTH. */
int om_mpr_skip(struct om_mpr *r);

/*
 * Copies a str into a new NUL-terminated string (caller frees with om_free).
 * Refuses embedded NUL (OM_EPROTO) and more than max bytes (OM_EMSGSIZE).
 * A nil gives *out = NULL when allow_nil.
 */
int om_mpr_strdup(struct om_mpr *r, size_t max, bool allow_nil, char **out);

/* True when the str s/n equals the C string key. */
bool om_mp_key_is(const char *s, uint32_t n, const char *key);

#endif
