/*
 * Fuzzes the strict msgpack reader (proto/mp.c) with arbitrary bytes.
 *
 * The input is walked object by object with om_mpr_skip, and read a second
 * time with the typed reader that om_mpr_peek suggests.  Checked beyond not
 * crashing: an error consumes nothing and stays sticky, a success never
 * moves past the end, and every object our reader accepts is accepted by
 * msgpack-c with the same length.  msgpack-c only ever sees bytes our
 * reader has already bounded (counts <= bytes, depth <= 16), so its
 * allocations stay small.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "om/mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
	if (!ok)
		abort();
}

/* msgpack-c must parse exactly the n bytes at p as one object. */
static void
same_as_msgpack_c(const uint8_t *p, size_t n)
{
	msgpack_unpacked u;
	size_t off = 0;

	msgpack_unpacked_init(&u);
	check(msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS);
	check(off == n);
	msgpack_unpacked_destroy(&u);
}

/*
 * Reads the object at r (which om_mpr_skip accepted) with the typed call that
 * om_mpr_peek suggests: that must succeed too.  Only om_mpr_strdup may refuse,
 * for a NUL or a length over its cap, and then the plain str reader must not.
 */
static int
typed_read(struct om_mpr *r)
{
	struct om_mpr again = *r;
	const uint8_t *p;
	const char *s;
	uint32_t n;
	uint64_t u;
	int64_t i;
	bool b;
	char *dup;
	int rc;

	switch (om_mpr_peek(r)) {
	case OM_MP_NIL:
		return om_mpr_nil(r);
	case OM_MP_BOOL:
		return om_mpr_bool(r, &b);
	case OM_MP_UINT:
		return om_mpr_uint(r, &u);
	case OM_MP_INT:
		/* int8..int64 may hold non-negative values: om_mpr_int takes both */
		return om_mpr_int(r, &i);
	case OM_MP_STR:
		rc = om_mpr_strdup(r, 1024, false, &dup);
		if (rc == 0) {
			om_free(dup);
			return 0;
		}
		check(rc == OM_EMSGSIZE || rc == OM_EPROTO || rc == OM_ENOMEM);
		check(r->p == again.p && r->err == rc);
		*r = again;
		return om_mpr_str(r, &s, &n);
	case OM_MP_BIN:
		return om_mpr_bin(r, &p, &n);
	case OM_MP_ARRAY:
		return om_mpr_array(r, &n);
	case OM_MP_MAP:
		return om_mpr_map(r, &n);
	default: /* float, ext */
		return om_mpr_skip(r);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct om_mpr r, t;
	int rc;

	om_mpr_init(&r, data, size);
	while (om_mpr_peek(&r) != OM_MP_NONE) {
		const uint8_t *at = r.p;

		t = r;
		rc = om_mpr_skip(&r);
		if (rc != 0) {
			check(r.p == at && r.err == rc);
			check(om_mpr_skip(&r) == rc && om_mpr_peek(&r) == OM_MP_NONE);
			check(rc == OM_EPROTO || rc == OM_EDEPTH);
			break;
		}
		check(r.p > at && r.p <= r.end);
		same_as_msgpack_c(at, (size_t)(r.p - at));

		/* the typed reader on the same object consumes its header (or all of it) */
		check(typed_read(&t) == 0);
		check(t.p > at && t.p <= r.p);
	}
	return 0;
}
