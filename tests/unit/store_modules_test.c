/*
 * master/store_modules.c against a real PostgreSQL: the module catalog.
 *
 * OM_TEST_PGCONN is a conninfo to an admin database (see pgfx.h); without
 * it every case is skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "om/base.h"
#include "om/msg.h"
#include "store.h"

#include "pgfx.h"

#define SHELL_SCHEMA                                                                               \
	"[{\"name\":\"cmd\",\"type\":\"string\",\"required\":true,\"default\":null,"               \
	"\"description\":\"\",\"free_form\":true,\"secret\":false}]"

static int
group_setup(void **state)
{
	return pgfx_setup(state, "om_store_modules_test");
}

static void
assert_idcs(char **idcs, size_t n, const char *const *want, size_t nwant)
{
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(idcs[i], want[i]);
	for (size_t i = 0; i < n; i++)
		om_free(idcs[i]);
	om_free(idcs);
}

static void
test_migration(void **state)
{
	struct fx *f = fx_of(state);

	assert_true(om_store_schema_version(f->st) >= 6);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 3", 0, NULL), 1);
	assert_int_equal(
	        q_int(f, "SELECT count(*) FROM schema_migrations WHERE version = 6", 0, NULL), 1);
}

static void
test_put_list_get(void **state)
{
	struct fx *f = fx_of(state);
	struct om_module_info w1[] = {
	        {"shell", "1.0", "c", "run a command", SHELL_SCHEMA},
	        {"ping", "1", "script", NULL, "[]", true},
	};
	struct om_module_info w2[] = {{"shell", "2.0", "c", "run a command, v2", SHELL_SCHEMA}};
	static const char *const both[] = {"bj", "sh"}, *const bj[] = {"bj"};
	struct om_module_info *mods, *mi;
	char **idcs;
	size_t n, ni;

	assert_int_equal(om_store_modules_put(f->st, "w1", "bj", w1, 2), 0);
	assert_int_equal(om_store_modules_list(f->st, &mods, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(mods[0].name, "ping");
	assert_null(mods[0].description);
	assert_string_equal(mods[0].schema, "[]");
	assert_true(mods[0].idempotent);
	assert_string_equal(mods[1].name, "shell");
	assert_false(mods[1].idempotent);
	assert_string_equal(mods[1].version, "1.0");
	assert_string_equal(mods[1].kind, "c");
	assert_non_null(strstr(mods[1].schema, "\"free_form\": true"));
	om_modules_free(mods, n);

	/* a second worker in another IDC: the last announcement describes the module */
	assert_int_equal(om_store_modules_put(f->st, "w2", "sh", w2, 1), 0);
	assert_int_equal(om_store_module_get(f->st, "shell", &mi, &idcs, &ni), 0);
	assert_string_equal(mi->version, "2.0");
	assert_string_equal(mi->description, "run a command, v2");
	om_modules_free(mi, 1);
	assert_idcs(idcs, ni, both, 2);

	/* a worker's build that stops promising idempotence: the catalog says so */
	assert_int_equal(om_store_module_get(f->st, "ping", &mi, NULL, NULL), 0);
	assert_true(mi->idempotent);
	om_modules_free(mi, 1);
	w1[1].idempotent = false;
	assert_int_equal(om_store_modules_put(f->st, "w1", "bj", w1, 2), 0);
	assert_int_equal(om_store_module_get(f->st, "ping", &mi, NULL, NULL), 0);
	assert_false(mi->idempotent);
	om_modules_free(mi, 1);

	/* w1 stops offering ping: nobody offers it any more */
	assert_int_equal(om_store_modules_put(f->st, "w1", "bj", w1, 1), 0);
	assert_int_equal(om_store_module_get(f->st, "ping", &mi, NULL, NULL), OM_ENOTFOUND);
	assert_null(mi);
	assert_int_equal(om_store_modules_list(f->st, &mods, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(mods[0].name, "shell");
	om_modules_free(mods, n);

	/* w2 offers nothing: shell stays offered in bj only */
	assert_int_equal(om_store_modules_put(f->st, "w2", "sh", NULL, 0), 0);
	assert_int_equal(om_store_module_get(f->st, "shell", &mi, &idcs, &ni), 0);
	om_modules_free(mi, 1);
	assert_idcs(idcs, ni, bj, 1);

	/* names that cannot be modules are not looked up */
	assert_int_equal(om_store_module_get(f->st, "../x", &mi, NULL, NULL), OM_ENOTFOUND);
	assert_int_equal(om_store_module_get(f->st, "nosuch", &mi, NULL, NULL), OM_ENOTFOUND);
}

static void
test_unchanged_keeps_row(void **state)
{
	struct fx *f = fx_of(state);
	struct om_module_info m[] = {{"stable", "1", "c", "d", "[]"}};
	int64_t before, after;

	assert_int_equal(om_store_modules_put(f->st, "w3", "bj", m, 1), 0);
	before = q_int(f,
	               "SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM modules"
	               " WHERE name = 'stable'",
	               0, NULL);
	usleep(20000);
	assert_int_equal(om_store_modules_put(f->st, "w3", "bj", m, 1), 0);
	after = q_int(f,
	              "SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM modules"
	              " WHERE name = 'stable'",
	              0, NULL);
	assert_true(before == after);
	m[0].version = "2";
	assert_int_equal(om_store_modules_put(f->st, "w3", "bj", m, 1), 0);
	after = q_int(f,
	              "SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM modules"
	              " WHERE name = 'stable'",
	              0, NULL);
	assert_true(after > before);
	/* idempotence alone is a change too */
	before = after;
	usleep(20000);
	m[0].idempotent = true;
	assert_int_equal(om_store_modules_put(f->st, "w3", "bj", m, 1), 0);
	after = q_int(f,
	              "SELECT (extract(epoch FROM updated_at) * 1000000)::bigint FROM modules"
	              " WHERE name = 'stable' AND idempotent",
	              0, NULL);
	assert_true(after > before);
}

static void
test_hostile_text(void **state)
{
	struct fx *f = fx_of(state);
	struct om_module_info m[] = {{"utf", "1\xff", "c\xc3", "caf\xc3\xa9 \xe2\x28\xa1", "[]"}};
	struct om_module_info bad[] = {
	        {"good", "1", "c", NULL, "[]"},
	        {"notarray", "1", "c", NULL, "{}"},
	};
	struct om_module_info *mi;

	assert_int_equal(om_store_modules_put(f->st, "w4", "bj", m, 1), 0);
	assert_int_equal(om_store_module_get(f->st, "utf", &mi, NULL, NULL), 0);
	assert_string_equal(mi->version, "1?");
	assert_string_equal(mi->kind, "c?");
	assert_non_null(strstr(mi->description, "caf\xc3\xa9 "));
	om_modules_free(mi, 1);

	/* the caller validates schemas; the table still refuses a non-array, all or nothing */
	assert_int_equal(om_store_modules_put(f->st, "w5", "bj", bad, 2), OM_EDB);
	assert_int_equal(om_store_module_get(f->st, "good", &mi, NULL, NULL), OM_ENOTFOUND);
	/* and the store is usable afterwards */
	assert_int_equal(om_store_modules_put(f->st, "w5", "bj", bad, 1), 0);
	assert_int_equal(om_store_module_get(f->st, "good", &mi, NULL, NULL), 0);
	om_modules_free(mi, 1);

	/* arguments the contract excludes */
	bad[0].name = "-x";
	assert_int_equal(om_store_modules_put(f->st, "w5", "bj", bad, 1), OM_EINVAL);
	assert_int_equal(om_store_modules_put(f->st, NULL, "bj", bad, 1), OM_EINVAL);
	assert_int_equal(om_store_modules_put(f->st, "w5", "bj", NULL, 1), OM_EINVAL);
	assert_int_equal(om_store_modules_put(f->st, "w5", "bj", bad, OM_MAX_MODULES + 1),
	                 OM_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_migration),
	        cmocka_unit_test(test_put_list_get),
	        cmocka_unit_test(test_unchanged_keeps_row),
	        cmocka_unit_test(test_hostile_text),
	};
	return cmocka_run_group_tests_name("store_modules", tests, group_setup, group_teardown);
}
