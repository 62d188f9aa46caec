/* Tests for proto/mp.c: writer round trips and the strict reader on hostile bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "om/mp.h"

#define MAXBUF (1u << 20)

/* Checks that reading failed with want, left the reader where it was and stays failed. */
static void
assert_failed(struct om_mpr *r, const uint8_t *at, int rc, int want)
{
	uint64_t u;

	assert_int_equal(rc, want);
	assert_int_equal(r->err, want);
	assert_ptr_equal(r->p, at);
	assert_int_equal(om_mpr_uint(r, &u), want);
	assert_int_equal(om_mpr_skip(r), want);
	assert_ptr_equal(r->p, at);
}

static void
test_uint_boundaries(void **state)
{
	static const struct {
		uint64_t v;
		size_t len;
	} cases[] = {
	        {0, 1},
	        {127, 1},
	        {128, 2},
	        {255, 2},
	        {256, 3},
	        {65535, 3},
	        {65536, 5},
	        {UINT32_MAX, 5},
	        {(uint64_t)UINT32_MAX + 1, 9},
	        {INT64_MAX, 9},
	        {(uint64_t)INT64_MAX + 1, 9},
	        {UINT64_MAX, 9},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct om_buf b;
		struct om_mpr r;
		uint64_t u = 1;
		int64_t s = 1;

		om_buf_init(&b, MAXBUF);
		om_mpw_uint(&b, cases[i].v);
		assert_int_equal(b.err, 0);
		assert_int_equal(b.len, cases[i].len);

		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_peek(&r), OM_MP_UINT);
		assert_int_equal(om_mpr_uint(&r, &u), 0);
		assert_true(u == cases[i].v);
		assert_ptr_equal(r.p, r.end);

		om_mpr_init(&r, b.data, b.len);
		if (cases[i].v <= INT64_MAX) {
			assert_int_equal(om_mpr_int(&r, &s), 0);
			assert_true(s == (int64_t)cases[i].v);
			assert_ptr_equal(r.p, r.end);
		} else {
			assert_failed(&r, b.data, om_mpr_int(&r, &s), OM_ERANGE);
		}

		/* The same values through om_mpw_int when they fit: same bytes. */
		if (cases[i].v <= INT64_MAX) {
			struct om_buf b2;

			om_buf_init(&b2, MAXBUF);
			om_mpw_int(&b2, (int64_t)cases[i].v);
			assert_int_equal(b2.len, b.len);
			assert_memory_equal(b2.data, b.data, b.len);
			om_buf_release(&b2);
		}
		om_buf_release(&b);
	}
}

static void
test_int_boundaries(void **state)
{
	static const struct {
		int64_t v;
		size_t len;
	} cases[] = {
	        {-1, 1},        {-32, 1},       {-33, 2},
	        {-128, 2},      {-129, 3},      {-32768, 3},
	        {-32769, 5},    {INT32_MIN, 5}, {(int64_t)INT32_MIN - 1, 9},
	        {INT64_MIN, 9},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct om_buf b;
		struct om_mpr r;
		int64_t s = 0;
		uint64_t u;

		om_buf_init(&b, MAXBUF);
		om_mpw_int(&b, cases[i].v);
		assert_int_equal(b.err, 0);
		assert_int_equal(b.len, cases[i].len);

		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_peek(&r), OM_MP_INT);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == cases[i].v);
		assert_ptr_equal(r.p, r.end);

		/* A negative is never a uint. */
		om_mpr_init(&r, b.data, b.len);
		assert_failed(&r, b.data, om_mpr_uint(&r, &u), OM_ETYPE);
		om_buf_release(&b);
	}
}

/* int8..int64 formats holding non-negative values are valid uints. */
static void
test_signed_formats_nonnegative(void **state)
{
	static const uint8_t in[] = {0xd0, 0x05, 0xd1, 0x01, 0x00, 0xd2, 0x7f, 0xff,
	                             0xff, 0xff, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff,
	                             0xff, 0xff, 0xff, 0xd0, 0x80, 0xd1, 0xff, 0x7f};
	struct om_mpr r;
	uint64_t u;
	int64_t s;

	(void)state;
	om_mpr_init(&r, in, sizeof(in));
	assert_int_equal(om_mpr_uint(&r, &u), 0);
	assert_true(u == 5);
	assert_int_equal(om_mpr_uint(&r, &u), 0);
	assert_true(u == 256);
	assert_int_equal(om_mpr_uint(&r, &u), 0);
	assert_true(u == INT32_MAX);
	assert_int_equal(om_mpr_int(&r, &s), 0);
	assert_true(s == INT64_MAX);
	assert_int_equal(om_mpr_int(&r, &s), 0);
	assert_true(s == -128);
	assert_int_equal(om_mpr_int(&r, &s), 0);
	assert_true(s == -129);
	assert_ptr_equal(r.p, r.end);
}

static void
fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)('a' + i % 26);
}

static void
test_str_bin_lengths(void **state)
{
	static const struct {
		size_t n, str_hdr, bin_hdr;
	} cases[] = {
	        {0, 1, 2},   {31, 1, 2},    {32, 2, 2},    {255, 2, 2},
	        {256, 3, 3}, {65535, 3, 3}, {65536, 5, 5},
	};
	uint8_t *src = malloc(65536);

	(void)state;
	assert_non_null(src);
	fill(src, 65536);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = cases[i].n;
		struct om_buf b;
		struct om_mpr r;
		const char *s;
		const uint8_t *p;
		uint32_t len;
		char *dup;

		om_buf_init(&b, MAXBUF);
		om_mpw_str(&b, (const char *)src, n);
		om_mpw_bin(&b, src, n);
		assert_int_equal(b.err, 0);
		assert_int_equal(b.len, cases[i].str_hdr + n + cases[i].bin_hdr + n);

		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_peek(&r), OM_MP_STR);
		assert_int_equal(om_mpr_str(&r, &s, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(s, src, n);
		assert_int_equal(om_mpr_peek(&r), OM_MP_BIN);
		assert_int_equal(om_mpr_bin(&r, &p, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(p, src, n);
		assert_ptr_equal(r.p, r.end);

		/* bin accepts a str too; str refuses a bin */
		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_bin(&r, &p, &len), 0);
		assert_int_equal(len, n);
		{
			const uint8_t *at = r.p;

			assert_failed(&r, at, om_mpr_str(&r, &s, &len), OM_ETYPE);
		}

		/* strdup copies and terminates; max is inclusive */
		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_strdup(&r, n, false, &dup), 0);
		assert_non_null(dup);
		assert_int_equal(strlen(dup), n);
		assert_memory_equal(dup, src, n);
		om_free(dup);
		if (n > 0) {
			om_mpr_init(&r, b.data, b.len);
			assert_failed(&r, b.data, om_mpr_strdup(&r, n - 1, false, &dup),
			              OM_EMSGSIZE);
			assert_null(dup);
		}
		om_buf_release(&b);
	}
	free(src);
}

static void
test_containers_and_scalars(void **state)
{
	struct om_buf b;
	struct om_mpr r;
	uint32_t n;
	bool v;
	const char *s;
	uint32_t len;

	(void)state;
	om_buf_init(&b, MAXBUF);
	om_mpw_map(&b, 2);
	om_mpw_cstr(&b, "k");
	om_mpw_bool(&b, true);
	om_mpw_cstr(&b, "n");
	om_mpw_cstr(&b, NULL);
	om_mpw_array(&b, 2);
	om_mpw_bool(&b, false);
	om_mpw_nil(&b);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.data[6], 0xc0); /* om_mpw_cstr(NULL) wrote nil */

	om_mpr_init(&r, b.data, b.len);
	assert_int_equal(om_mpr_map(&r, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(om_mpr_str(&r, &s, &len), 0);
	assert_true(om_mp_key_is(s, len, "k"));
	assert_false(om_mp_key_is(s, len, "kk"));
	assert_false(om_mp_key_is(s, len, ""));
	assert_int_equal(om_mpr_bool(&r, &v), 0);
	assert_true(v);
	assert_int_equal(om_mpr_str(&r, &s, &len), 0);
	assert_int_equal(om_mpr_peek(&r), OM_MP_NIL);
	assert_int_equal(om_mpr_nil(&r), 0);
	assert_int_equal(om_mpr_array(&r, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(om_mpr_bool(&r, &v), 0);
	assert_false(v);
	assert_int_equal(om_mpr_nil(&r), 0);
	assert_int_equal(om_mpr_peek(&r), OM_MP_NONE);
	/* end of input is truncation */
	assert_int_equal(om_mpr_nil(&r), OM_EPROTO);
	om_buf_release(&b);

	/* map 32/16 and array 16/32 headers */
	om_buf_init(&b, MAXBUF);
	om_mpw_array(&b, 16);
	for (int i = 0; i < 16; i++)
		om_mpw_uint(&b, (uint64_t)i);
	om_mpw_map(&b, 16);
	for (int i = 0; i < 32; i++)
		om_mpw_nil(&b);
	assert_int_equal(b.data[0], 0xdc);
	om_mpr_init(&r, b.data, b.len);
	assert_int_equal(om_mpr_skip(&r), 0);
	assert_int_equal(r.p[0], 0xde);
	assert_int_equal(om_mpr_map(&r, &n), 0);
	assert_int_equal(n, 16);
	om_buf_release(&b);
}

/* One example of every msgpack format; the reader must walk all of them. */
/* clang-format off */
static const uint8_t every_format[] = {
	0x05,					/* positive fixint */
	0x81, 0xa1, 'a', 0x01,			/* fixmap */
	0x92, 0x01, 0x02,			/* fixarray */
	0xa3, 'a', 'b', 'c',			/* fixstr */
	0xc0, 0xc2, 0xc3,			/* nil false true */
	0xc4, 0x01, 0xff,			/* bin8 */
	0xc5, 0x00, 0x02, 0x01, 0x02,		/* bin16 */
	0xc6, 0x00, 0x00, 0x00, 0x01, 0x07,	/* bin32 */
	0xc7, 0x01, 0x05, 0xaa,			/* ext8 */
	0xc8, 0x00, 0x01, 0x05, 0xaa,		/* ext16 */
	0xc9, 0x00, 0x00, 0x00, 0x00, 0x05,	/* ext32, empty */
	0xca, 0x3f, 0x80, 0x00, 0x00,		/* float32 1.0 */
	0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,	/* float64 1.0 */
	0xcc, 0xff,				/* uint8 */
	0xcd, 0xff, 0xff,			/* uint16 */
	0xce, 0xff, 0xff, 0xff, 0xff,		/* uint32 */
	0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* uint64 */
	0xd0, 0x80,				/* int8 */
	0xd1, 0x80, 0x00,			/* int16 */
	0xd2, 0x80, 0x00, 0x00, 0x00,		/* int32 */
	0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,	/* int64 */
	0xd4, 0x01, 0x00,			/* fixext1 */
	0xd5, 0x01, 0x00, 0x00,			/* fixext2 */
	0xd6, 0x01, 0, 0, 0, 0,			/* fixext4 */
	0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0,	/* fixext8 */
	0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* fixext16 */
	0xd9, 0x01, 'x',			/* str8 */
	0xda, 0x00, 0x01, 'x',			/* str16 */
	0xdb, 0x00, 0x00, 0x00, 0x01, 'x',	/* str32 */
	0xdc, 0x00, 0x01, 0xc0,			/* array16 */
	0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0,	/* array32 */
	0xde, 0x00, 0x01, 0xc0, 0xc0,		/* map16 */
	0xdf, 0x00, 0x00, 0x00, 0x01, 0xc0, 0xc0, /* map32 */
	0xe0,					/* negative fixint -32 */
	0xff,					/* negative fixint -1 */
};
/* clang-format on */

static const enum om_mp_type every_type[] = {
        OM_MP_UINT,  OM_MP_MAP,  OM_MP_ARRAY, OM_MP_STR,   OM_MP_NIL,   OM_MP_BOOL, OM_MP_BOOL,
        OM_MP_BIN,   OM_MP_BIN,  OM_MP_BIN,   OM_MP_EXT,   OM_MP_EXT,   OM_MP_EXT,  OM_MP_FLOAT,
        OM_MP_FLOAT, OM_MP_UINT, OM_MP_UINT,  OM_MP_UINT,  OM_MP_UINT,  OM_MP_INT,  OM_MP_INT,
        OM_MP_INT,   OM_MP_INT,  OM_MP_EXT,   OM_MP_EXT,   OM_MP_EXT,   OM_MP_EXT,  OM_MP_EXT,
        OM_MP_STR,   OM_MP_STR,  OM_MP_STR,   OM_MP_ARRAY, OM_MP_ARRAY, OM_MP_MAP,  OM_MP_MAP,
        OM_MP_INT,   OM_MP_INT,
};

static void
test_every_format(void **state)
{
	struct om_mpr r;
	size_t k = 0;
	uint64_t u;
	int64_t s;

	(void)state;
	om_mpr_init(&r, every_format, sizeof(every_format));
	while (om_mpr_peek(&r) != OM_MP_NONE) {
		assert_true(k < sizeof(every_type) / sizeof(every_type[0]));
		assert_int_equal(om_mpr_peek(&r), every_type[k]);
		assert_int_equal(om_mpr_skip(&r), 0);
		k++;
	}
	assert_int_equal(k, sizeof(every_type) / sizeof(every_type[0]));
	assert_int_equal(r.err, 0);
	assert_ptr_equal(r.p, r.end);

	/* decoded values of the fixed-width ints */
	{
		static const uint8_t ints[] = {0xcc, 0xff, 0xcd, 0xff, 0xff, 0xce, 0xff, 0xff,
		                               0xff, 0xff, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2,
		                               0x80, 0x00, 0x00, 0x00, 0xd3, 0x80, 0,    0,
		                               0,    0,    0,    0,    0,    0xe0, 0xff};
		om_mpr_init(&r, ints, sizeof(ints));
		assert_int_equal(om_mpr_uint(&r, &u), 0);
		assert_true(u == 255);
		assert_int_equal(om_mpr_uint(&r, &u), 0);
		assert_true(u == 65535);
		assert_int_equal(om_mpr_uint(&r, &u), 0);
		assert_true(u == UINT32_MAX);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == INT8_MIN);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == INT16_MIN);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == INT32_MIN);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == INT64_MIN);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == -32);
		assert_int_equal(om_mpr_int(&r, &s), 0);
		assert_true(s == -1);
		assert_ptr_equal(r.p, r.end);
	}
}

/* A float, an ext, a map are not ints, strings or bools. */
static void
test_type_mismatch(void **state)
{
	static const uint8_t f[] = {0xca, 0x3f, 0x80, 0x00, 0x00};
	static const uint8_t e[] = {0xd4, 0x01, 0x00};
	static const uint8_t m[] = {0x80};
	struct om_mpr r;
	uint64_t u;
	int64_t s;
	bool b;
	const char *str;
	uint32_t n;
	char *dup;

	(void)state;
	om_mpr_init(&r, f, sizeof(f));
	assert_int_equal(om_mpr_peek(&r), OM_MP_FLOAT);
	assert_failed(&r, f, om_mpr_uint(&r, &u), OM_ETYPE);
	om_mpr_init(&r, f, sizeof(f));
	assert_failed(&r, f, om_mpr_int(&r, &s), OM_ETYPE);
	om_mpr_init(&r, e, sizeof(e));
	assert_failed(&r, e, om_mpr_str(&r, &str, &n), OM_ETYPE);
	om_mpr_init(&r, m, sizeof(m));
	assert_failed(&r, m, om_mpr_bool(&r, &b), OM_ETYPE);
	om_mpr_init(&r, m, sizeof(m));
	assert_failed(&r, m, om_mpr_array(&r, &n), OM_ETYPE);
	om_mpr_init(&r, m, sizeof(m));
	assert_failed(&r, m, om_mpr_nil(&r), OM_ETYPE);
	om_mpr_init(&r, m, sizeof(m));
	assert_failed(&r, m, om_mpr_strdup(&r, 10, true, &dup), OM_ETYPE);
	om_mpr_init(&r, m, sizeof(m));
	assert_int_equal(om_mpr_map(&r, &n), 0);
	assert_int_equal(n, 0);
}

static void
test_malicious(void **state)
{
	static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t arr16[] = {0xdc, 0x00, 0x03, 0x01, 0x02};
	static const uint8_t map_half[] = {0x82, 0x01, 0x02, 0x03}; /* 2 pairs need 4 bytes */
	static const uint8_t str32[] = {0xdb, 0x00, 0x00, 0x10, 0x00, 'a', 'b', 'c'};
	static const uint8_t str32max[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
	static const uint8_t bin32[] = {0xc6, 0x00, 0x00, 0x10, 0x00, 1, 2, 3};
	static const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t fixext16[] = {0xd8, 0x01, 0, 0, 0};
	static const uint8_t c1[] = {0xc1};
	static const uint8_t c1_inside[] = {0x91, 0xc1};
	struct om_mpr r;
	uint32_t n;
	const char *s;
	const uint8_t *p;
	uint64_t u;

	(void)state;
	om_mpr_init(&r, arr32, sizeof(arr32));
	assert_failed(&r, arr32, om_mpr_array(&r, &n), OM_EPROTO);
	om_mpr_init(&r, arr32, sizeof(arr32));
	assert_failed(&r, arr32, om_mpr_skip(&r), OM_EPROTO);

	om_mpr_init(&r, map32, sizeof(map32));
	assert_failed(&r, map32, om_mpr_map(&r, &n), OM_EPROTO);
	om_mpr_init(&r, map32, sizeof(map32));
	assert_failed(&r, map32, om_mpr_skip(&r), OM_EPROTO);

	om_mpr_init(&r, arr16, sizeof(arr16));
	assert_failed(&r, arr16, om_mpr_array(&r, &n), OM_EPROTO);
	om_mpr_init(&r, map_half, sizeof(map_half));
	assert_failed(&r, map_half, om_mpr_map(&r, &n), OM_EPROTO);

	om_mpr_init(&r, str32, sizeof(str32));
	assert_failed(&r, str32, om_mpr_str(&r, &s, &n), OM_EPROTO);
	om_mpr_init(&r, str32max, sizeof(str32max));
	assert_failed(&r, str32max, om_mpr_bin(&r, &p, &n), OM_EPROTO);
	om_mpr_init(&r, bin32, sizeof(bin32));
	assert_failed(&r, bin32, om_mpr_bin(&r, &p, &n), OM_EPROTO);
	om_mpr_init(&r, bin32, sizeof(bin32));
	assert_failed(&r, bin32, om_mpr_skip(&r), OM_EPROTO);
	om_mpr_init(&r, ext32, sizeof(ext32));
	assert_failed(&r, ext32, om_mpr_skip(&r), OM_EPROTO);
	om_mpr_init(&r, fixext16, sizeof(fixext16));
	assert_failed(&r, fixext16, om_mpr_skip(&r), OM_EPROTO);

	om_mpr_init(&r, c1, sizeof(c1));
	assert_int_equal(om_mpr_peek(&r), OM_MP_INVALID);
	assert_failed(&r, c1, om_mpr_skip(&r), OM_EPROTO);
	om_mpr_init(&r, c1, sizeof(c1));
	assert_failed(&r, c1, om_mpr_uint(&r, &u), OM_EPROTO);
	om_mpr_init(&r, c1_inside, sizeof(c1_inside));
	assert_failed(&r, c1_inside, om_mpr_skip(&r), OM_EPROTO);

	/* empty input */
	om_mpr_init(&r, NULL, 0);
	assert_int_equal(om_mpr_peek(&r), OM_MP_NONE);
	assert_int_equal(om_mpr_skip(&r), OM_EPROTO);
}

static void
test_depth(void **state)
{
	enum { DEEP = 10000 };
	uint8_t *deep = malloc(DEEP);
	struct om_mpr r;

	(void)state;
	assert_non_null(deep);
	memset(deep, 0x91, DEEP - 1);
	deep[DEEP - 1] = 0x90;
	om_mpr_init(&r, deep, DEEP);
	assert_failed(&r, deep, om_mpr_skip(&r), OM_EDEPTH);

	/* exactly OM_MP_MAX_DEPTH nested containers pass, one more fails */
	memset(deep, 0x91, OM_MP_MAX_DEPTH - 1);
	deep[OM_MP_MAX_DEPTH - 1] = 0x90;
	om_mpr_init(&r, deep, OM_MP_MAX_DEPTH);
	assert_int_equal(om_mpr_skip(&r), 0);
	assert_ptr_equal(r.p, r.end);

	/* maps: key nil, value the next map; the innermost value nil */
	{
		uint8_t m[2 * OM_MP_MAX_DEPTH + 1];
		size_t k = 0;

		for (int i = 0; i < OM_MP_MAX_DEPTH; i++) {
			m[k++] = 0x81;
			m[k++] = 0xc0;
		}
		m[k++] = 0xc0;
		om_mpr_init(&r, m, k);
		assert_int_equal(om_mpr_skip(&r), 0);
		assert_ptr_equal(r.p, r.end);
	}

	memset(deep, 0x91, OM_MP_MAX_DEPTH);
	deep[OM_MP_MAX_DEPTH] = 0x90;
	om_mpr_init(&r, deep, OM_MP_MAX_DEPTH + 1);
	assert_failed(&r, deep, om_mpr_skip(&r), OM_EDEPTH);
	free(deep);
}

/* A valid object with every kind of nesting; every strict prefix must fail cleanly. */
static void
build_sample(struct om_buf *b)
{
	static const uint8_t bytes[300] = {1, 2, 3};

	om_mpw_map(b, 4);
	om_mpw_cstr(b, "list");
	om_mpw_array(b, 5);
	om_mpw_uint(b, UINT64_MAX);
	om_mpw_int(b, -129);
	om_mpw_bool(b, true);
	om_mpw_nil(b);
	om_mpw_map(b, 1);
	om_mpw_cstr(b, "inner");
	om_mpw_array(b, 0);
	om_mpw_cstr(b, "bin");
	om_mpw_bin(b, bytes, sizeof(bytes));
	om_mpw_cstr(b, "str");
	om_mpw_str(b, (const char *)bytes + 10, 40);
	om_mpw_cstr(b, "ext");
	om_buf_append(b, "\xd6\x01\x00\x00\x00\x00", 6);
}

static void
test_truncation(void **state)
{
	struct om_buf b;

	(void)state;
	om_buf_init(&b, MAXBUF);
	build_sample(&b);
	assert_int_equal(b.err, 0);
	for (size_t n = 0; n < b.len; n++) {
		/* a heap copy of exactly n bytes lets ASan catch any read past the end */
		uint8_t *cut = malloc(n ? n : 1);
		struct om_mpr r;

		assert_non_null(cut);
		memcpy(cut, b.data, n);
		om_mpr_init(&r, cut, n);
		assert_failed(&r, cut, om_mpr_skip(&r), OM_EPROTO);
		free(cut);
	}
	{
		struct om_mpr r;

		om_mpr_init(&r, b.data, b.len);
		assert_int_equal(om_mpr_skip(&r), 0);
		assert_ptr_equal(r.p, r.end);
	}
	om_buf_release(&b);
}

static void
test_sticky(void **state)
{
	static const uint8_t in[] = {0xa1, 'x', 0x01, 0x02};
	struct om_mpr r;
	uint64_t u;
	const char *s;
	uint32_t n;

	(void)state;
	om_mpr_init(&r, in, sizeof(in));
	assert_int_equal(om_mpr_uint(&r, &u), OM_ETYPE);
	/* the str is right there, but the reader stays failed */
	assert_int_equal(om_mpr_str(&r, &s, &n), OM_ETYPE);
	assert_int_equal(om_mpr_skip(&r), OM_ETYPE);
	assert_int_equal(om_mpr_peek(&r), OM_MP_NONE);
	assert_ptr_equal(r.p, in);
}

static void
test_strdup(void **state)
{
	static const uint8_t nul[] = {0xa3, 'a', 0x00, 'b'};
	static const uint8_t nil[] = {0xc0};
	static const uint8_t ok[] = {0xa2, 'h', 'i'};
	struct om_mpr r;
	char *s = (char *)1;

	(void)state;
	om_mpr_init(&r, nul, sizeof(nul));
	assert_failed(&r, nul, om_mpr_strdup(&r, 100, false, &s), OM_EPROTO);
	assert_null(s);

	om_mpr_init(&r, nil, sizeof(nil));
	assert_int_equal(om_mpr_strdup(&r, 100, true, &s), 0);
	assert_null(s);
	assert_ptr_equal(r.p, r.end);
	om_mpr_init(&r, nil, sizeof(nil));
	assert_failed(&r, nil, om_mpr_strdup(&r, 100, false, &s), OM_ETYPE);

	om_mpr_init(&r, ok, sizeof(ok));
	om_alloc_fail_at(1);
	assert_failed(&r, ok, om_mpr_strdup(&r, 100, false, &s), OM_ENOMEM);
	om_alloc_fail_at(0);
	om_mpr_init(&r, ok, sizeof(ok));
	assert_int_equal(om_mpr_strdup(&r, 2, false, &s), 0);
	assert_string_equal(s, "hi");
	om_free(s);
}

static void
test_writer_sticky(void **state)
{
	struct om_buf b;

	(void)state;
	om_buf_init(&b, 4);
	om_mpw_cstr(&b, "abc"); /* 4 bytes: fits exactly */
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 4);
	om_mpw_uint(&b, 1);
	assert_int_equal(b.err, OM_EMSGSIZE);
	om_buf_reset(&b);
	om_mpw_cstr(&b, "abcdefgh");
	assert_int_equal(b.err, OM_EMSGSIZE);
	/* later small writes do not append after the failure */
	om_mpw_nil(&b);
	assert_int_equal(b.err, OM_EMSGSIZE);
	om_buf_release(&b);

	om_buf_init(&b, MAXBUF);
	om_alloc_fail_at(1);
	om_mpw_uint(&b, 7);
	om_alloc_fail_at(0);
	assert_int_equal(b.err, OM_ENOMEM);
	om_mpw_uint(&b, 7);
	assert_int_equal(b.len, 0);
	om_buf_release(&b);
}

/* Random nested objects packed by msgpack-c itself: skip must consume exactly each one. */
static uint32_t rng_state = 12345;

static uint32_t
rng(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

static void
pack_random(msgpack_packer *pk, int depth)
{
	static const char junk[300] = "0123456789";
	uint32_t n;

	switch (rng() % (depth < 6 ? 12 : 9)) {
	case 0:
		msgpack_pack_uint64(pk, (uint64_t)rng() << (rng() % 40));
		break;
	case 1:
		msgpack_pack_int64(pk, -(int64_t)(rng() << (rng() % 30)));
		break;
	case 2:
		msgpack_pack_nil(pk);
		break;
	case 3:
		msgpack_pack_true(pk);
		break;
	case 4:
		msgpack_pack_double(pk, 1.5);
		break;
	case 5:
		msgpack_pack_float(pk, 2.5f);
		break;
	case 6:
		n = rng() % 300;
		msgpack_pack_str_with_body(pk, junk, n);
		break;
	case 7:
		n = rng() % 300;
		msgpack_pack_bin_with_body(pk, junk, n);
		break;
	case 8:
		n = rng() % 20;
		msgpack_pack_ext_with_body(pk, junk, n, (int8_t)(rng() % 100));
		break;
	case 9:
	case 10:
		n = rng() % 5;
		msgpack_pack_array(pk, n);
		while (n--)
			pack_random(pk, depth + 1);
		break;
	default:
		n = rng() % 4;
		msgpack_pack_map(pk, n);
		while (n--) {
			pack_random(pk, depth + 1);
			pack_random(pk, depth + 1);
		}
		break;
	}
}

static void
test_random_objects(void **state)
{
	(void)state;
	for (int i = 0; i < 500; i++) {
		msgpack_sbuffer sb;
		msgpack_packer pk;
		struct om_mpr r;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		pack_random(&pk, 0);
		pack_random(&pk, 0);
		om_mpr_init(&r, sb.data, sb.size);
		assert_int_equal(om_mpr_skip(&r), 0);
		assert_int_equal(om_mpr_skip(&r), 0);
		assert_ptr_equal(r.p, r.end);
		msgpack_sbuffer_destroy(&sb);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_uint_boundaries),
	        cmocka_unit_test(test_int_boundaries),
	        cmocka_unit_test(test_signed_formats_nonnegative),
	        cmocka_unit_test(test_str_bin_lengths),
	        cmocka_unit_test(test_containers_and_scalars),
	        cmocka_unit_test(test_every_format),
	        cmocka_unit_test(test_type_mismatch),
	        cmocka_unit_test(test_malicious),
	        cmocka_unit_test(test_depth),
	        cmocka_unit_test(test_truncation),
	        cmocka_unit_test(test_sticky),
	        cmocka_unit_test(test_strdup),
	        cmocka_unit_test(test_writer_sticky),
	        cmocka_unit_test(test_random_objects),
	};

	return cmocka_run_group_tests_name("mp", tests, NULL, NULL);
}
