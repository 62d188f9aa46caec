/* Target selectors: master/selector.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "selector.h"
#include "store.h"

static char *web_groups[] = {"web", "frontend"};
static char *db_groups[] = {"db"};

/* Five hosts in two IDCs; the tests match selectors against all of them. */
static const struct om_host hosts[] = {
        {.name = "web-1", .idc = "bj", .groups = web_groups, .ngroups = 2},
        {.name = "web-2", .idc = "sh", .groups = web_groups, .ngroups = 2},
        {.name = "web-3", .idc = "bj", .groups = web_groups, .ngroups = 1},
        {.name = "db-1", .idc = "bj", .groups = db_groups, .ngroups = 1},
        {.name = "db-2", .idc = "sh", .groups = NULL, .ngroups = 0},
};
#define NHOSTS (sizeof(hosts) / sizeof(hosts[0]))

/* The matching hosts' names, space separated, in table order. */
static void
matches(const char *selector, char *out, size_t outlen)
{
	struct om_selector *sel = NULL;
	char err[256];
	size_t o = 0;
	int rc;

	rc = om_selector_parse(selector, &sel, err, sizeof(err));
	if (rc != 0)
		fail_msg("parse '%s': %s", selector, err);
	out[0] = '\0';
	for (size_t i = 0; i < NHOSTS; i++) {
		if (!om_selector_match(sel, &hosts[i]))
			continue;
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", o ? " " : "", hosts[i].name);
	}
	om_selector_free(sel);
}

#define assert_selects(sel, want)                                                                  \
	do {                                                                                       \
		char got_[512];                                                                    \
		matches((sel), got_, sizeof(got_));                                                \
		assert_string_equal(got_, (want));                                                 \
	} while (0)

/* Parse must fail with OM_EINVAL and an error containing want. */
static void
assert_rejects(const char *selector, const char *want)
{
	struct om_selector *sel = (struct om_selector *)1;
	char err[256];
	int rc;

	memset(err, 0, sizeof(err));
	rc = om_selector_parse(selector, &sel, err, sizeof(err));
	assert_int_equal(rc, OM_EINVAL);
	assert_null(sel);
	if (strstr(err, want) == NULL)
		fail_msg("selector '%.40s': error '%s' lacks '%s'", selector, err, want);
}

static void
test_all(void **state)
{
	(void)state;
	assert_selects("all", "web-1 web-2 web-3 db-1 db-2");
}

static void
test_idc(void **state)
{
	(void)state;
	assert_selects("idc:bj", "web-1 web-3 db-1");
	assert_selects("idc:nowhere", "");
}

static void
test_group(void **state)
{
	(void)state;
	assert_selects("group:web", "web-1 web-2 web-3");
	/* web-3 has ngroups 1: only the first entry counts. */
	assert_selects("group:frontend", "web-1 web-2");
	assert_selects("group:db", "db-1");
}

static void
test_exact_name(void **state)
{
	(void)state;
	assert_selects("web-2", "web-2");
	assert_selects("web", "");
}

static void
test_glob(void **state)
{
	(void)state;
	assert_selects("web-*", "web-1 web-2 web-3");
	assert_selects("web-[12]", "web-1 web-2");
	assert_selects("*-?", "web-1 web-2 web-3 db-1 db-2");
	assert_selects("web-[!1]", "web-2 web-3");
}

static void
test_union(void **state)
{
	(void)state;
	assert_selects("idc:bj,group:db", "web-1 web-3 db-1");
	assert_selects("db-2,web-1", "web-1 db-2");
	/* A host matched twice is listed once. */
	assert_selects("web-1,web-*", "web-1 web-2 web-3");
}

static void
test_exclusion(void **state)
{
	(void)state;
	assert_selects("all,!web-1", "web-2 web-3 db-1 db-2");
	assert_selects("group:web,!idc:sh", "web-1 web-3");
	/* Order does not matter: exclusions always win. */
	assert_selects("!web-1,all", "web-2 web-3 db-1 db-2");
	assert_selects("web-1,!web-1", "");
}

static void
test_only_exclusion(void **state)
{
	(void)state;
	assert_selects("!idc:sh", "web-1 web-3 db-1");
	assert_selects("!idc:sh,!group:db", "web-1 web-3");
}

static void
test_whitespace(void **state)
{
	(void)state;
	assert_selects("  idc:sh ,\tgroup:db\n", "web-2 db-1 db-2");
	assert_selects("all, ! web-1", "web-2 web-3 db-1 db-2");
}

static void
test_errors(void **state)
{
	(void)state;
	assert_rejects("", "empty selector");
	assert_rejects("   ", "empty selector");
	assert_rejects(",", "empty term at position 1");
	assert_rejects("all,,web-1", "empty term at position 5");
	assert_rejects("all, ", "empty term at position 5");
	assert_rejects("idc:", "empty IDC name after 'idc:'");
	assert_rejects("group:", "empty group name after 'group:'");
	assert_rejects("foo:bar", "unknown selector prefix 'foo:'");
	assert_rejects("web-1,IDC:bj", "unknown selector prefix 'IDC:'");
	assert_rejects("!", "empty term after '!'");
	assert_rejects("!!web-1", "double '!'");
	assert_rejects("web 1", "invalid character ' ' at position 4");
	assert_rejects("idc:b j", "invalid IDC name 'b j'");
	assert_rejects("group:-x", "invalid group name '-x' at position 7");
	assert_rejects("all,!idc:a\001b", "invalid IDC name 'a\\x01b' at position 10");
	assert_rejects("web-1;reboot", "invalid character ';'");
	/* Control bytes are escaped, never echoed. */
	assert_rejects("x\033[2J:y", "unknown selector prefix 'x\\x1b[2J:'");
}

static void
test_too_long(void **state)
{
	char *s = om_malloc(5001);

	(void)state;
	assert_non_null(s);
	memset(s, 'a', 5000);
	s[5000] = '\0';
	assert_rejects(s, "longer than 4096");
	/* Exactly the limit is fine. */
	s[OM_MAX_TEXT] = '\0';
	assert_selects(s, "");
	om_free(s);
}

static void
test_too_many_terms(void **state)
{
	char s[1024];
	size_t o = 0;

	(void)state;
	for (int i = 0; i < 300; i++) {
		if (i > 0)
			s[o++] = ',';
		s[o++] = 'a';
	}
	s[o] = '\0';
	assert_rejects(s, "too many terms (300, at most 256)");

	/* 256 terms are accepted. */
	o = 0;
	for (int i = 0; i < 256; i++) {
		if (i > 0)
			s[o++] = ',';
		s[o++] = 'a';
	}
	s[o] = '\0';
	assert_selects(s, "");
}

static void
test_bad_args(void **state)
{
	struct om_selector *sel = NULL;
	char err[64];

	(void)state;
	assert_int_equal(om_selector_parse(NULL, &sel, err, sizeof(err)), OM_EINVAL);
	assert_int_equal(om_selector_parse("all", NULL, err, sizeof(err)), OM_EINVAL);
	/* No error buffer is fine too. */
	assert_int_equal(om_selector_parse("foo:x", &sel, NULL, 0), OM_EINVAL);
	/* A short buffer truncates. */
	assert_int_equal(om_selector_parse("foo:x", &sel, err, 8), OM_EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_false(om_selector_match(NULL, &hosts[0]));
	om_selector_free(NULL);
}

/* A host with missing fields matches nothing that needs them. */
static void
test_sparse_host(void **state)
{
	const struct om_host empty = {0};
	struct om_selector *sel;

	(void)state;
	assert_int_equal(om_selector_parse("idc:bj,group:web,web-*,web-1", &sel, NULL, 0), 0);
	assert_false(om_selector_match(sel, &empty));
	om_selector_free(sel);
	assert_int_equal(om_selector_parse("all", &sel, NULL, 0), 0);
	assert_true(om_selector_match(sel, &empty));
	om_selector_free(sel);
}

static bool
in(const char *s, const char **v, size_t n)
{
	for (size_t i = 0; s != NULL && i < n; i++)
		if (strcmp(s, v[i]) == 0)
			return true;
	return false;
}

/* What the store's filtered load lets through (its WHERE clause). */
static bool
filter_passes(const struct om_host_filter *f, const struct om_host *h)
{
	if (in(h->name, f->names, f->nnames) || in(h->idc, f->idcs, f->nidcs))
		return true;
	for (uint32_t g = 0; g < h->ngroups; g++)
		if (in(h->groups[g], f->groups, f->ngroups))
			return true;
	return false;
}

/* The prefilter: a superset of the matches, or "load everything". */
static void
test_filter(void **state)
{
	static const char *const narrow[] = {"web-1", "web-1,db-2", "idc:sh", "group:db,web-3",
	                                     "group:web,!web-2", "idc:bj,!group:db", "nohost"};
	static const char *const wide[] = {"all", "web-*", "!web-1", "db-1,web-?", "all,!db-1"};
	struct om_host_filter f;
	struct om_selector *sel;

	(void)state;
	for (size_t i = 0; i < sizeof(narrow) / sizeof(narrow[0]); i++) {
		assert_int_equal(om_selector_parse(narrow[i], &sel, NULL, 0), 0);
		assert_true(om_selector_filter(sel, &f));
		for (size_t k = 0; k < NHOSTS; k++)
			if (om_selector_match(sel, &hosts[k]) && !filter_passes(&f, &hosts[k]))
				fail_msg("'%s' matches %s, which its filter drops", narrow[i],
				         hosts[k].name);
		om_selector_filter_release(&f);
		om_selector_free(sel);
	}
	/* exclusions name nothing to load */
	assert_int_equal(om_selector_parse("group:web,!web-2", &sel, NULL, 0), 0);
	assert_true(om_selector_filter(sel, &f));
	assert_int_equal(f.nnames + f.nidcs, 0);
	assert_int_equal(f.ngroups, 1);
	om_selector_filter_release(&f);
	om_selector_free(sel);
	for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++) {
		assert_int_equal(om_selector_parse(wide[i], &sel, NULL, 0), 0);
		assert_false(om_selector_filter(sel, &f));
		om_selector_free(sel);
	}
}

/* Every allocation failure is reported as OM_ENOMEM without a leak. */
static void
test_alloc_failures(void **state)
{
	struct om_selector *sel;
	char err[128];
	int rc;

	(void)state;
	for (unsigned long nth = 1;; nth++) {
		om_alloc_fail_at(nth);
		rc = om_selector_parse("idc:bj,group:web,!web-1,db-*", &sel, err, sizeof(err));
		om_alloc_fail_at(0);
		if (rc == 0) {
			assert_true(om_selector_match(sel, &hosts[2]));
			om_selector_free(sel);
			break;
		}
		assert_int_equal(rc, OM_ENOMEM);
		assert_null(sel);
		assert_true(nth < 100);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_all),
	        cmocka_unit_test(test_filter),
	        cmocka_unit_test(test_idc),
	        cmocka_unit_test(test_group),
	        cmocka_unit_test(test_exact_name),
	        cmocka_unit_test(test_glob),
	        cmocka_unit_test(test_union),
	        cmocka_unit_test(test_exclusion),
	        cmocka_unit_test(test_only_exclusion),
	        cmocka_unit_test(test_whitespace),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_too_long),
	        cmocka_unit_test(test_too_many_terms),
	        cmocka_unit_test(test_bad_args),
	        cmocka_unit_test(test_sparse_host),
	        cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests_name("selector", tests, NULL, NULL);
}
