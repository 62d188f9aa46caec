/*
 * msgpack writer (msgpack-c's packer on an om_buf) and strict reader.
 *
 * The reader is hand-written on purpose: msgpack-c's unpacker reserves
 * memory from declared counts before the bytes exist (a 5-byte "dd ffffffff"
 * reserves ~512 MB, LIBS.md section 5).  Here every header is decoded by
 * read_hdr(), which refuses any length or element count that the remaining
 * bytes cannot hold, so nothing downstream ever sizes an allocation from an
 * unchecked number.
 */
#include <string.h>

#include <msgpack.h>

#include "om/mp.h"

/* --- writer ------------------------------------------------------------------- */

static int
buf_write(void *data, const char *p, size_t n)
{
	/* om_buf_append is a no-op once b->err is set, so errors stay sticky. */
	return om_buf_append(data, p, n);
}

static void
packer_init(msgpack_packer *pk, struct om_buf *b)
{
	msgpack_packer_init(pk, b, buf_write);
}

static void
buf_fail(struct om_buf *b, int err)
{
	if (b->err == 0)
		b->err = err;
}

void
om_mpw_map(struct om_buf *b, uint32_t n)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	(void)msgpack_pack_map(&pk, n);
}

void
om_mpw_array(struct om_buf *b, uint32_t n)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	(void)msgpack_pack_array(&pk, n);
}

void
om_mpw_str(struct om_buf *b, const char *s, size_t n)
{
	msgpack_packer pk;

	/* msgpack-c would silently truncate the length to 32 bits. */
	if (n > UINT32_MAX) {
		buf_fail(b, OM_EMSGSIZE);
		return;
	}
	packer_init(&pk, b);
	(void)msgpack_pack_str_with_body(&pk, s, n);
}

void
om_mpw_cstr(struct om_buf *b, const char *s)
{
	if (s == NULL)
		om_mpw_nil(b);
	else
		om_mpw_str(b, s, strlen(s));
}

void
om_mpw_bin(struct om_buf *b, const void *p, size_t n)
{
	msgpack_packer pk;

	if (n > UINT32_MAX) {
		buf_fail(b, OM_EMSGSIZE);
		return;
	}
	packer_init(&pk, b);
	(void)msgpack_pack_bin_with_body(&pk, p, n);
}

void
om_mpw_uint(struct om_buf *b, uint64_t v)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	(void)msgpack_pack_uint64(&pk, v);
}

void
om_mpw_int(struct om_buf *b, int64_t v)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	(void)msgpack_pack_int64(&pk, v);
}

void
om_mpw_bool(struct om_buf *b, bool v)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	if (v)
		(void)msgpack_pack_true(&pk);
	else
		(void)msgpack_pack_false(&pk);
}

void
om_mpw_nil(struct om_buf *b)
{
	msgpack_packer pk;

	packer_init(&pk, b);
	(void)msgpack_pack_nil(&pk);
}

/* --- reader ------------------------------------------------------------------- */

/* One decoded header; the body (if any) follows the hlen header bytes. */
struct hdr {
	enum om_mp_type type;
	size_t hlen;    /* tag byte + length or value bytes */
	uint64_t blen;  /* str/bin body, ext type byte + data; checked <= remaining */
	uint64_t count; /* array elements, map pairs; checked against remaining */
	uint64_t u;     /* UINT value, BOOL 0/1 */
	int64_t i;      /* INT (negative) value */
};

static uint64_t
be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t k = 0; k < n; k++)
		v = (v << 8) | p[k];
	return v;
}

static enum om_mp_type
type_of(uint8_t b)
{
	if (b <= 0x7f)
		return OM_MP_UINT;
	if (b <= 0x8f)
		return OM_MP_MAP;
	if (b <= 0x9f)
		return OM_MP_ARRAY;
	if (b <= 0xbf)
		return OM_MP_STR;
	if (b >= 0xe0)
		return OM_MP_INT;
	switch (b) {
	case 0xc0:
		return OM_MP_NIL;
	case 0xc2:
	case 0xc3:
		return OM_MP_BOOL;
	case 0xc4:
	case 0xc5:
	case 0xc6:
		return OM_MP_BIN;
	case 0xc7:
	case 0xc8:
	case 0xc9:
	case 0xd4:
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return OM_MP_EXT;
	case 0xca:
	case 0xcb:
		return OM_MP_FLOAT;
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
		return OM_MP_UINT;
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		/* int8..int64 may carry a non-negative value: peek says INT, read_hdr refines */
		return OM_MP_INT;
	case 0xd9:
	case 0xda:
	case 0xdb:
		return OM_MP_STR;
	case 0xdc:
	case 0xdd:
		return OM_MP_ARRAY;
	case 0xde:
	case 0xdf:
		return OM_MP_MAP;
	default:
		return OM_MP_INVALID; /* 0xc1 */
	}
}

/*
 * Decodes the header at p.  Returns OM_EPROTO when the header or the body it
 * declares runs past end, when a container declares more elements than the
 * remaining bytes could hold (each element takes at least one byte), and for
 * the never-used byte 0xc1.
 */
static int
read_hdr(const uint8_t *p, const uint8_t *end, struct hdr *h)
{
	size_t avail = (size_t)(end - p), lsize = 0;
	uint8_t b;

	memset(h, 0, sizeof(*h));
	if (avail == 0)
		return OM_EPROTO;
	b = p[0];
	h->type = type_of(b);
	h->hlen = 1;
	if (b <= 0x7f) {
		h->u = b;
	} else if (b <= 0x9f) { /* fixmap, fixarray */
		h->count = b & 0x0f;
	} else if (b <= 0xbf) { /* fixstr */
		h->blen = b & 0x1f;
	} else if (b >= 0xe0) {
		h->i = (int8_t)b;
	} else {
		switch (b) {
		case 0xc0:
			break;
		case 0xc1:
			return OM_EPROTO;
		case 0xc2:
		case 0xc3:
			h->u = b & 1;
			break;
		case 0xc4: /* bin8/16/32 */
		case 0xc5:
		case 0xc6:
			lsize = (size_t)1 << (b - 0xc4);
			break;
		case 0xc7: /* ext8/16/32 */
		case 0xc8:
		case 0xc9:
			lsize = (size_t)1 << (b - 0xc7);
			break;
		case 0xca:
			h->hlen = 5;
			break;
		case 0xcb:
			h->hlen = 9;
			break;
		case 0xcc: /* uint8..64 */
		case 0xcd:
		case 0xce:
		case 0xcf:
			h->hlen = 1 + ((size_t)1 << (b - 0xcc));
			break;
		case 0xd0: /* int8..64 */
		case 0xd1:
		case 0xd2:
		case 0xd3:
			h->hlen = 1 + ((size_t)1 << (b - 0xd0));
			break;
		case 0xd4: /* fixext1..16: type byte + 2^k data bytes */
		case 0xd5:
		case 0xd6:
		case 0xd7:
		case 0xd8:
			h->blen = 1 + ((uint64_t)1 << (b - 0xd4));
			break;
		case 0xd9: /* str8/16/32 */
		case 0xda:
		case 0xdb:
			lsize = (size_t)1 << (b - 0xd9);
			break;
		case 0xdc:
		case 0xde:
			lsize = 2;
			break;
		case 0xdd:
		case 0xdf:
			lsize = 4;
			break;
		}
	}
	h->hlen += lsize;
	if (avail < h->hlen)
		return OM_EPROTO;
	avail -= h->hlen;
	if (lsize) {
		uint64_t n = be(p + 1, lsize);

		if (h->type == OM_MP_ARRAY || h->type == OM_MP_MAP)
			h->count = n;
		else if (h->type == OM_MP_EXT)
			h->blen = n + 1; /* the ext type byte */
		else
			h->blen = n;
	}
	if (b >= 0xcc && b <= 0xcf) {
		h->u = be(p + 1, h->hlen - 1);
	} else if (b >= 0xd0 && b <= 0xd3) {
		size_t w = h->hlen - 1;
		uint64_t raw = be(p + 1, w);

		/* Sign-extend from w bytes without shifting into the sign bit. */
		if (w < 8 && (raw >> (w * 8 - 1)) & 1)
			raw |= ~((UINT64_C(1) << (w * 8)) - 1);
		h->i = (int64_t)raw;
		if (h->i >= 0) {
			h->type = OM_MP_UINT;
			h->u = (uint64_t)h->i;
		}
	}
	if (h->blen > avail)
		return OM_EPROTO;
	if (h->type == OM_MP_ARRAY && h->count > avail)
		return OM_EPROTO;
	if (h->type == OM_MP_MAP && h->count > avail / 2)
		return OM_EPROTO;
	return 0;
}

static int
fail(struct om_mpr *r, int rc)
{
	r->err = rc;
	return rc;
}

/* Reads the next header, checking that it has the wanted type; consumes nothing. */
static int
next(struct om_mpr *r, struct hdr *h, enum om_mp_type want)
{
	int rc;

	if (r->err)
		return r->err;
	if ((rc = read_hdr(r->p, r->end, h)) != 0)
		return fail(r, rc);
	if (want != OM_MP_NONE && h->type != want)
		return fail(r, OM_ETYPE);
	return 0;
}

static void
consume(struct om_mpr *r, const struct hdr *h)
{
	r->p += h->hlen + (size_t)h->blen;
}

void
om_mpr_init(struct om_mpr *r, const void *data, size_t n)
{
	static const uint8_t none[1];

	/* NULL + 0 is undefined behaviour; an empty input still gets a real pointer. */
	r->p = data != NULL ? data : none;
	r->end = r->p + n;
	r->err = 0;
}

/* OM_MP_NONE at the end of input and once an error is set: nothing more can be read. */
enum om_mp_type
om_mpr_peek(const struct om_mpr *r)
{
	if (r->err || r->p >= r->end)
		return OM_MP_NONE;
	return type_of(r->p[0]);
}

int
om_mpr_map(struct om_mpr *r, uint32_t *n)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_MAP)) != 0)
		return rc;
	*n = (uint32_t)h.count;
	consume(r, &h);
	return 0;
}

int
om_mpr_array(struct om_mpr *r, uint32_t *n)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_ARRAY)) != 0)
		return rc;
	*n = (uint32_t)h.count;
	consume(r, &h);
	return 0;
}

int
om_mpr_str(struct om_mpr *r, const char **s, uint32_t *n)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_STR)) != 0)
		return rc;
	*s = (const char *)r->p + h.hlen;
	*n = (uint32_t)h.blen;
	consume(r, &h);
	return 0;
}

int
om_mpr_bin(struct om_mpr *r, const uint8_t **p, uint32_t *n)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_NONE)) != 0)
		return rc;
	if (h.type != OM_MP_BIN && h.type != OM_MP_STR)
		return fail(r, OM_ETYPE);
	*p = r->p + h.hlen;
	*n = (uint32_t)h.blen;
	consume(r, &h);
	return 0;
}

int
om_mpr_uint(struct om_mpr *r, uint64_t *v)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_UINT)) != 0)
		return rc;
	*v = h.u;
	consume(r, &h);
	return 0;
}

/* OM_ERANGE for a uint above INT64_MAX. */
int
om_mpr_int(struct om_mpr *r, int64_t *v)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_NONE)) != 0)
		return rc;
	if (h.type == OM_MP_UINT) {
		if (h.u > INT64_MAX)
			return fail(r, OM_ERANGE);
		*v = (int64_t)h.u;
	} else if (h.type == OM_MP_INT) {
		*v = h.i;
	} else {
		return fail(r, OM_ETYPE);
	}
	consume(r, &h);
	return 0;
}

int
om_mpr_bool(struct om_mpr *r, bool *v)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_BOOL)) != 0)
		return rc;
	*v = h.u != 0;
	consume(r, &h);
	return 0;
}

int
om_mpr_nil(struct om_mpr *r)
{
	struct hdr h;
	int rc;

	if ((rc = next(r, &h, OM_MP_NIL)) != 0)
		return rc;
	consume(r, &h);
	return 0;
}

/*
 * Iterative, so hostile nesting cannot exhaust the C stack; pend[d] counts the
 * objects still to read at depth d (depth 0 is the object being skipped).
 * r->p only moves once the whole object has been walked.
 */
int
om_mpr_skip(struct om_mpr *r)
{
	uint64_t pend[OM_MP_MAX_DEPTH + 1];
	const uint8_t *p;
	struct hdr h;
	int d = 0, rc;

	if (r->err)
		return r->err;
	p = r->p;
	pend[0] = 1;
	while (d >= 0) {
		if (pend[d] == 0) {
			d--;
			continue;
		}
		pend[d]--;
		if ((rc = read_hdr(p, r->end, &h)) != 0)
			return fail(r, rc);
		p += h.hlen + (size_t)h.blen;
		if (h.type != OM_MP_ARRAY && h.type != OM_MP_MAP)
			continue;
		/* Counted even when empty: the cap is on containers opened, not filled. */
		if (d >= OM_MP_MAX_DEPTH)
			return fail(r, OM_EDEPTH);
		if (h.count)
			pend[++d] = h.type == OM_MP_MAP ? h.count * 2 : h.count;
	}
	r->p = p;
	return 0;
}

int
om_mpr_strdup(struct om_mpr *r, size_t max, bool allow_nil, char **out)
{
	struct hdr h;
	char *s;
	int rc;

	*out = NULL;
	if (r->err)
		return r->err;
	if (allow_nil && r->p < r->end && r->p[0] == 0xc0) {
		r->p++;
		return 0;
	}
	if ((rc = next(r, &h, OM_MP_STR)) != 0)
		return rc;
	if (h.blen > max)
		return fail(r, OM_EMSGSIZE);
	if (memchr(r->p + h.hlen, '\0', (size_t)h.blen) != NULL)
		return fail(r, OM_EPROTO);
	if ((s = om_strndup((const char *)r->p + h.hlen, (size_t)h.blen)) == NULL)
		return fail(r, OM_ENOMEM);
	consume(r, &h);
	*out = s;
	return 0;
}

bool
om_mp_key_is(const char *s, uint32_t n, const char *key)
{
	size_t kl = strlen(key);

	return kl == n && memcmp(s, key, kl) == 0;
}
