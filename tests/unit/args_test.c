/* Tests for cli/args.c: omctl's -a / -e parsing against a module schema. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "om/base.h"
#include "om/params.h"

static const struct om_plugin_param shell[] = {
        {"cmd", "string", 1, NULL, "", NULL, OM_PARAM_FREE_FORM},
        {"chdir", "path", 0, NULL, "", NULL, 0},
        {"creates", "path", 0, NULL, "", NULL, 0},
};
static const struct om_plugin_param copy[] = {
        {"src", "file", 1, NULL, "", NULL, 0},
        {"dest", "path", 1, NULL, "", NULL, 0},
        {"mode", "mode", 0, "0644", "", NULL, 0},
};
#define N(s) (sizeof(s) / sizeof((s)[0]))

/* Splits text and compares with the NULL-terminated want. */
static void
expect_words(const char *text, const char *const *want)
{
	char **w, err[128];
	size_t n, i;

	assert_int_equal(om_args_split(text, &w, &n, err, sizeof(err)), 0);
	for (i = 0; want[i]; i++) {
		if (i >= n)
			fail_msg("'%s': %zu words, want more", text, n);
		assert_string_equal(w[i], want[i]);
	}
	assert_int_equal(n, i);
	om_args_words_free(w, n);
}

static void
test_split(void **state)
{
	char **w, err[128];
	size_t n;

	(void)state;
	expect_words("", (const char *[]){NULL});
	expect_words(" \t\n ", (const char *[]){NULL});
	expect_words("a", (const char *[]){"a", NULL});
	expect_words("  a  b\tc\n", (const char *[]){"a", "b", "c", NULL});
	expect_words("'a b' \"c d\"", (const char *[]){"a b", "c d", NULL});
	expect_words("k='x y'z", (const char *[]){"k=x yz", NULL});
	expect_words("''", (const char *[]){"", NULL});
	expect_words("'it''s'", (const char *[]){"its", NULL});
	expect_words("\"a\\\"b\\\\c\\d\"", (const char *[]){"a\"b\\c\\d", NULL});
	expect_words("'a\\b'", (const char *[]){"a\\b", NULL});
	expect_words("a\\ b c", (const char *[]){"a b", "c", NULL});
	expect_words("\"$HOME\" '$(x)'", (const char *[]){"$HOME", "$(x)", NULL});

	assert_int_equal(om_args_split("echo it's", &w, &n, err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "single quote"));
	assert_null(w);
	assert_int_equal(om_args_split("a \"b", &w, &n, err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "double quote"));
	assert_int_equal(om_args_split("a\\", &w, &n, err, sizeof(err)), OM_EINVAL);
}

static void
expect_kv(const struct om_args *a, const char *key, const char *val)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->kv[i].key, key) == 0) {
			assert_string_equal(a->kv[i].val, val);
			return;
		}
	fail_msg("no parameter '%s'", key);
}

static void
test_pairs(void **state)
{
	struct om_args a = {0};
	char err[256];

	(void)state;
	assert_int_equal(om_args_text(&a, copy, N(copy), "src=/tmp/x dest='/etc/my motd' mode=0600",
	                              err, sizeof(err)),
	                 0);
	assert_int_equal(a.n, 3);
	expect_kv(&a, "src", "/tmp/x");
	expect_kv(&a, "dest", "/etc/my motd");
	expect_kv(&a, "mode", "0600");
	om_args_release(&a);
	assert_null(a.kv);
	assert_int_equal(a.n, 0);

	/* shell: every word is a known key=value */
	assert_int_equal(
	        om_args_text(&a, shell, N(shell), "cmd='ls -l' chdir=/tmp", err, sizeof(err)), 0);
	assert_int_equal(a.n, 2);
	expect_kv(&a, "cmd", "ls -l");
	expect_kv(&a, "chdir", "/tmp");
	om_args_release(&a);

	/* a value may hold '=' */
	assert_int_equal(om_args_text(&a, shell, N(shell), "cmd=a=b", err, sizeof(err)), 0);
	expect_kv(&a, "cmd", "a=b");
	om_args_release(&a);

	/* the same key twice */
	assert_int_equal(om_args_text(&a, copy, N(copy), "src=a src=b", err, sizeof(err)),
	                 OM_EINVAL);
	assert_non_null(strstr(err, "'src' given twice"));
	om_args_release(&a);

	/* nothing at all: no parameter */
	assert_int_equal(om_args_text(&a, copy, N(copy), "  ", err, sizeof(err)), 0);
	assert_int_equal(a.n, 0);
}

static void
test_free_form(void **state)
{
	struct om_args a = {0};
	char err[256];

	(void)state;
	/* plain shell text, as before: the whole text, unsplit */
	assert_int_equal(om_args_text(&a, shell, N(shell), "hostname; uname -sr", err, sizeof(err)),
	                 0);
	assert_int_equal(a.n, 1);
	expect_kv(&a, "cmd", "hostname; uname -sr");
	om_args_release(&a);

	/* one word that is not key=value makes all of it free-form */
	assert_int_equal(
	        om_args_text(&a, shell, N(shell), "chdir=/tmp ls  -l 'x'", err, sizeof(err)), 0);
	assert_int_equal(a.n, 1);
	expect_kv(&a, "cmd", "chdir=/tmp ls  -l 'x'");
	om_args_release(&a);

	/* key=value with a key the module does not have: a shell assignment */
	assert_int_equal(om_args_text(&a, shell, N(shell), "FOO=bar", err, sizeof(err)), 0);
	expect_kv(&a, "cmd", "FOO=bar");
	om_args_release(&a);
	assert_int_equal(om_args_text(&a, shell, N(shell), "=x", err, sizeof(err)), 0);
	expect_kv(&a, "cmd", "=x");
	om_args_release(&a);

	/* text that does not split is free-form too */
	assert_int_equal(om_args_text(&a, shell, N(shell), "echo it's", err, sizeof(err)), 0);
	expect_kv(&a, "cmd", "echo it's");
	om_args_release(&a);

	/* a module without a free-form parameter refuses it */
	assert_int_equal(om_args_text(&a, copy, N(copy), "/tmp/x /etc/motd", err, sizeof(err)),
	                 OM_EINVAL);
	assert_non_null(strstr(err, "no free-form parameter"));
	assert_non_null(strstr(err, "src, dest, mode"));
	assert_int_equal(a.n, 0);
	assert_int_equal(om_args_text(&a, copy, N(copy), "src=a colour=red", err, sizeof(err)),
	                 OM_EINVAL);
	assert_int_equal(a.n, 0);

	/* -a after -e cmd=... is the same key twice */
	assert_int_equal(om_args_param(&a, shell, N(shell), "cmd=true", err, sizeof(err)), 0);
	assert_int_equal(om_args_text(&a, shell, N(shell), "uptime", err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "'cmd' given twice"));
	om_args_release(&a);
}

static void
test_param(void **state)
{
	struct om_args a = {0};
	char err[256];

	(void)state;
	assert_int_equal(om_args_param(&a, copy, N(copy), "dest=/a b", err, sizeof(err)), 0);
	assert_int_equal(om_args_param(&a, copy, N(copy), "mode=", err, sizeof(err)), 0);
	expect_kv(&a, "dest", "/a b");
	expect_kv(&a, "mode", "");
	assert_int_equal(om_args_param(&a, copy, N(copy), "colour=red", err, sizeof(err)),
	                 OM_EINVAL);
	assert_string_equal(err, "unknown parameter 'colour' (parameters: src, dest, mode)");
	assert_int_equal(om_args_param(&a, copy, N(copy), "dest", err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "key=value"));
	assert_int_equal(om_args_param(&a, copy, N(copy), "=x", err, sizeof(err)), OM_EINVAL);
	assert_int_equal(om_args_param(&a, copy, N(copy), "dest=/b", err, sizeof(err)), OM_EINVAL);
	assert_int_equal(a.n, 2);
	om_args_release(&a);
	assert_int_equal(om_args_param(&a, NULL, 0, "x=1", err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "parameters: none"));
}

static void
test_files(void **state)
{
	char path[] = "/tmp/om_args_test_XXXXXX", err[512];
	struct om_args a = {0};
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	close(fd);
	assert_int_equal(om_args_param(&a, copy, N(copy), "dest=/etc/motd", err, sizeof(err)), 0);
	assert_int_equal(om_args_set(&a, copy, N(copy), "src", path, err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), 0);
	expect_kv(&a, "src", "aGVsbG8=");
	expect_kv(&a, "dest", "/etc/motd"); /* only file parameters are read */
	/* and what is sent passes the master's validation */
	assert_int_equal(om_params_validate(copy, N(copy), a.kv, a.n, err, sizeof(err)), 0);
	om_args_release(&a);

	/* an empty file is an empty value */
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(om_args_set(&a, copy, N(copy), "src", path, err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), 0);
	expect_kv(&a, "src", "");
	om_args_release(&a);

	/* one byte over the bound */
	assert_int_equal(truncate(path, (off_t)OM_ARGS_FILE_MAX + 1), 0);
	assert_int_equal(om_args_set(&a, copy, N(copy), "src", path, err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), OM_EMSGSIZE);
	assert_non_null(strstr(err, "larger than"));
	om_args_release(&a);
	/* exactly the bound fits in one parameter */
	assert_int_equal(truncate(path, (off_t)OM_ARGS_FILE_MAX), 0);
	assert_int_equal(om_args_set(&a, copy, N(copy), "src", path, err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), 0);
	assert_true(strlen(a.kv[0].val) <= OM_MAX_PARAM);
	om_args_release(&a);
	unlink(path);

	assert_int_equal(om_args_set(&a, copy, N(copy), "src", path, err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), OM_ENOTFOUND);
	assert_non_null(strstr(err, "cannot read"));
	om_args_release(&a);
	assert_int_equal(om_args_set(&a, copy, N(copy), "src", "/tmp", err, sizeof(err)), 0);
	assert_int_equal(om_args_load_files(&a, copy, N(copy), err, sizeof(err)), OM_EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	om_args_release(&a);
}

/* Every allocation failure is reported as such and leaks nothing. */
static void
test_alloc_failure(void **state)
{
	struct om_args a = {0};
	char err[256];
	int rc;

	(void)state;
	for (unsigned long nth = 1; nth < 100; nth++) {
		om_alloc_fail_at(nth);
		rc = om_args_text(&a, shell, N(shell), "cmd='ls -l' chdir=/tmp", err, sizeof(err));
		om_alloc_fail_at(0);
		om_args_release(&a);
		if (rc == 0)
			break;
		assert_int_equal(rc, OM_ENOMEM);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_split),     cmocka_unit_test(test_pairs),
	        cmocka_unit_test(test_free_form), cmocka_unit_test(test_param),
	        cmocka_unit_test(test_files),     cmocka_unit_test(test_alloc_failure),
	};
	return cmocka_run_group_tests_name("args", tests, NULL, NULL);
}
