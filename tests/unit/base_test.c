/* Tests for proto/base.c and proto/err.c: bounded buffers, hex, shell quoting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "om/base.h"

static void
test_buf_bound(void **state)
{
	struct om_buf b;
	uint8_t big[100];

	(void)state;
	memset(big, 'x', sizeof(big));
	om_buf_init(&b, 64);
	assert_int_equal(om_buf_append(&b, big, 60), 0);
	assert_int_equal(om_buf_append(&b, big, 4), 0);
	assert_int_equal(b.len, 64);
	/* One byte past the ceiling fails, and the error sticks. */
	assert_int_equal(om_buf_append(&b, big, 1), OM_EMSGSIZE);
	assert_int_equal(b.err, OM_EMSGSIZE);
	assert_int_equal(om_buf_putc(&b, 'y'), OM_EMSGSIZE);
	assert_int_equal(b.len, 64);
	om_buf_reset(&b);
	assert_int_equal(b.err, 0);
	assert_int_equal(om_buf_printf(&b, "%d-%s", 42, "ok"), 0);
	assert_memory_equal(b.data, "42-ok", 5);
	om_buf_release(&b);
}

static void
test_buf_printf_long(void **state)
{
	struct om_buf b;
	char s[1000];

	(void)state;
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	om_buf_init(&b, 4096);
	assert_int_equal(om_buf_printf(&b, "<%s>", s), 0);
	assert_int_equal(b.len, 1001);
	om_buf_release(&b);
	om_buf_init(&b, 100);
	assert_int_equal(om_buf_printf(&b, "<%s>", s), OM_EMSGSIZE);
	om_buf_release(&b);
}

static void
test_alloc_failure(void **state)
{
	struct om_buf b;

	(void)state;
	om_buf_init(&b, 1024);
	om_alloc_fail_at(1);
	assert_int_equal(om_buf_append(&b, "abc", 3), OM_ENOMEM);
	assert_int_equal(b.len, 0);
	om_buf_reset(&b);
	assert_int_equal(om_buf_append(&b, "abc", 3), 0);
	om_buf_release(&b);
}

static void
test_hex(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0xff, 0x10}, out[4];
	char hex[9];

	(void)state;
	om_hex_encode(in, 4, hex);
	assert_string_equal(hex, "00abff10");
	assert_int_equal(om_hex_decode("00ABff10", out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(om_hex_decode("00abff1", out, 4), OM_EINVAL);
	assert_int_equal(om_hex_decode("00abff1g", out, 4), OM_EINVAL);
	assert_int_equal(om_hex_decode("00abff1000", out, 4), OM_EINVAL);
}

/* Runs `sh -c 'printf %s QUOTED'` and checks the word comes back unchanged. */
static void
roundtrip_quote(const char *s)
{
	struct om_buf b;
	char out[4096];
	size_t n = 0;
	FILE *p;

	om_buf_init(&b, 8192);
	om_buf_append(&b, "printf %s ", 10);
	assert_int_equal(om_shell_quote(&b, s, strlen(s)), 0);
	om_buf_putc(&b, '\0');
	assert_int_equal(b.err, 0);
	p = popen((const char *)b.data, "r");
	assert_non_null(p);
	n = fread(out, 1, sizeof(out), p);
	assert_int_equal(pclose(p), 0);
	assert_int_equal(n, strlen(s));
	assert_memory_equal(out, s, n);
	om_buf_release(&b);
}

static void
test_shell_quote(void **state)
{
	static const char *cases[] = {
	        "plain",      "",
	        "it's",       "''",
	        "a'b'c",      "$(id)",
	        "`id`",       "; touch /tmp/PWNED",
	        "\"double\"", "back\\slash",
	        "new\nline",  "-oProxyCommand=x",
	        "*",          "$HOME",
	        "tab\there",  "!event",
	        "a b  c",
	};
	struct om_buf b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		roundtrip_quote(cases[i]);
	/* NUL cannot be carried by any shell word: refused. */
	om_buf_init(&b, 64);
	assert_int_equal(om_shell_quote(&b, "a\0b", 3), OM_EINVAL);
	om_buf_release(&b);
}

static void
test_files(void **state)
{
	char dir[] = "/tmp/om-base-XXXXXX", path[64];
	uint8_t *data;
	size_t len;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(om_write_file(path, "hello", 5, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(om_read_file(path, 100, &data, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	om_free(data);
	assert_int_equal(om_read_file(path, 4, &data, &len), OM_EMSGSIZE);
	assert_int_equal(om_read_file("/nonexistent/x", 4, &data, &len), OM_ENOTFOUND);
	unlink(path);
	rmdir(dir);
}

static void
test_parse_u32(void **state)
{
	uint32_t v = 7;
	uint64_t z;
	enum om_log_level l;

	(void)state;
	assert_int_equal(om_parse_u32("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(om_parse_u32("0", 0, 100, &v), 0);
	assert_int_equal(om_parse_u32("4294967295", 0, UINT32_MAX, &v), 0);
	assert_int_equal(v, UINT32_MAX);
	/* Out of range, signs, spaces, junk and overflow are refused; v is left alone. */
	v = 7;
	assert_int_equal(om_parse_u32("101", 0, 100, &v), -1);
	assert_int_equal(om_parse_u32("0", 1, 100, &v), -1);
	assert_int_equal(om_parse_u32("-1", 0, UINT32_MAX, &v), -1);
	assert_int_equal(om_parse_u32(" 5", 0, 100, &v), -1);
	assert_int_equal(om_parse_u32("+5", 0, 100, &v), -1);
	assert_int_equal(om_parse_u32("5x", 0, 100, &v), -1);
	assert_int_equal(om_parse_u32("", 0, 100, &v), -1);
	assert_int_equal(om_parse_u32("4294967296", 0, UINT32_MAX, &v), -1);
	assert_int_equal(om_parse_u32("99999999999999999999999", 0, UINT32_MAX, &v), -1);
	assert_int_equal(v, 7);
	/* Sizes: K, M and G are powers of 1024 (om-worker --max-output). */
	assert_int_equal(om_parse_size("4096", 1, UINT64_MAX, &z), 0);
	assert_true(z == 4096);
	assert_int_equal(om_parse_size("64k", 1, UINT64_MAX, &z), 0);
	assert_true(z == 65536);
	assert_int_equal(om_parse_size("64M", 1, UINT64_MAX, &z), 0);
	assert_true(z == (uint64_t)64 << 20);
	assert_int_equal(om_parse_size("2G", 1, UINT64_MAX, &z), 0);
	assert_true(z == (uint64_t)2 << 30);
	z = 7;
	assert_int_equal(om_parse_size("1K", 2048, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size("2G", 1, (uint64_t)1 << 30, &z), -1);
	assert_int_equal(om_parse_size("1KB", 1, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size("1T", 1, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size("K", 1, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size("-1K", 0, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size(" 1K", 0, UINT64_MAX, &z), -1);
	assert_int_equal(om_parse_size("17179869184G", 0, UINT64_MAX, &z), -1); /* 2^64 */
	assert_int_equal(om_parse_size("99999999999999999999999", 0, UINT64_MAX, &z), -1);
	assert_true(z == 7);
	assert_int_equal(om_log_level_parse("debug", &l), 0);
	assert_int_equal(l, OM_LOG_DEBUG);
	assert_int_equal(om_log_level_parse("warning", &l), -1);
}

static void
test_strerror(void **state)
{
	(void)state;
	assert_string_equal(om_strerror(0), "success");
	assert_string_equal(om_strerror(OM_EREPLAY), "replayed or stale record");
	assert_string_equal(om_strerror(-9999), "unknown error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_buf_bound),     cmocka_unit_test(test_buf_printf_long),
	        cmocka_unit_test(test_alloc_failure), cmocka_unit_test(test_hex),
	        cmocka_unit_test(test_shell_quote),   cmocka_unit_test(test_files),
	        cmocka_unit_test(test_parse_u32),     cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
