/*
 * Tests for worker/plugins.c and worker/scriptmod.c loading: every misfit
 * plugin in tests/plugins is refused with a message naming what is wrong
 * (both versions for ABI and duplicate problems), good plugins and script
 * modules load, and the catalog carries kinds and schemas.
 *
 * Each case copies the plugins it needs from build/tests/plugins into a
 * fresh directory, so a case sees exactly its own files.  Log lines are
 * read back by pointing stderr at a temp file around om_plugins_load.
 *
 * OM_TEST_SDK_PLUGIN=path.so (tests/plugin_sdk.sh) adds a case loading an
 * out-of-tree plugin built against the installed SDK.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "om/base.h"
#include "om/msg.h"
#include "plugins.h"

static char build_dir[PATH_MAX]; /* .../build */
static char top_dir[PATH_MAX];   /* the source tree */

static const struct om_host_api test_api = {
        .api_version = OM_HOST_API_VERSION,
        .struct_size = sizeof(struct om_host_api),
};

static void
find_dirs(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	/* build/asan/tests/plugins_test */
	snprintf(build_dir, sizeof(build_dir), "%s", dirname(dirname(dirname(exe))));
	snprintf(top_dir, sizeof(top_dir), "%s", build_dir);
	*strrchr(top_dir, '/') = '\0';
}

static void
copy_file(const char *from, const char *to)
{
	uint8_t *data;
	size_t len;

	assert_int_equal(om_read_file(from, 64 << 20, &data, &len), 0);
	assert_int_equal(om_write_file(to, data, len, 0755), 0);
	om_free(data);
}

/* A fresh directory holding build/tests/plugins/<name>.so for each name. */
static char *
plugin_dir(const char *const *names)
{
	char tmpl[] = "/tmp/om-plugins-test-XXXXXX", from[PATH_MAX * 2], to[PATH_MAX * 2];
	char *dir;

	assert_non_null(mkdtemp(tmpl));
	dir = strdup(tmpl);
	for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
		snprintf(from, sizeof(from), "%s/tests/plugins/%s.so", build_dir, names[i]);
		snprintf(to, sizeof(to), "%s/%s.so", dir, names[i]);
		copy_file(from, to);
	}
	return dir;
}

static void
write_text(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(om_write_file(path, text, strlen(text), 0755), 0);
}

static void
remove_dir(char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* om_plugins_load with stderr captured; caller frees *log. */
static struct om_plugins *
load_logged(const char *pdir, const char *sdir, char **log)
{
	char tmpl[] = "/tmp/om-plugins-log-XXXXXX";
	struct om_plugins *p = NULL;
	int fd = mkstemp(tmpl), saved = dup(2);
	uint8_t *text;
	size_t len;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	assert_int_equal(om_plugins_load(pdir, sdir, &test_api, &p), 0);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_int_equal(om_read_file(tmpl, 1 << 20, &text, &len), 0);
	unlink(tmpl);
	*log = (char *)text;
	assert_non_null(p);
	return p;
}

static void
assert_log_has(const char *log, const char *want)
{
	if (strstr(log, want) == NULL)
		fail_msg("log lacks \"%s\"; log was:\n%s", want, log);
}

/* Loads good_one plus the misfit, expects only good_one and the message. */
static void
refused(const char *misfit, const char *want)
{
	const char *names[] = {"good_one", misfit, NULL};
	char *dir = plugin_dir(names), *log;
	struct om_plugins *p = load_logged(dir, NULL, &log);

	assert_int_equal(om_plugins_count(p), 1);
	assert_non_null(om_plugins_find(p, "testgood"));
	assert_log_has(log, want);
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

static void
test_good(void **state)
{
	const char *names[] = {"good_one", "good_two", NULL};
	char *dir = plugin_dir(names), *log, from[PATH_MAX * 2], to[PATH_MAX * 2];
	struct om_plugins *p;
	const struct om_module *m;
	struct om_module_info *cat;
	uint32_t n;

	(void)state;
	write_text(dir, "README", "not a plugin");
	snprintf(from, sizeof(from), "%s/tests/plugins/good_two.so", build_dir);
	snprintf(to, sizeof(to), "%s/.hidden.so", dir);
	copy_file(from, to);
	p = load_logged(dir, NULL, &log);
	assert_int_equal(om_plugins_count(p), 2);
	assert_non_null(m = om_plugins_find(p, "testgood"));
	assert_string_equal(m->kind, "c");
	assert_non_null(m->state); /* init ran */
	assert_non_null(m = om_plugins_find(p, "testgood2"));
	assert_null(m->state); /* no init */
	assert_null(om_plugins_find(p, "nothere"));
	assert_int_equal(om_plugins_catalog(p, &cat, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(cat[0].name, "testgood");
	assert_string_equal(cat[0].version, "1.0");
	assert_string_equal(cat[0].kind, "c");
	assert_string_equal(cat[0].schema, "[]");
	om_modules_free(cat, n);
	assert_log_has(log, "loaded module 'testgood' version 1.0");
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

static void
test_bad_magic(void **state)
{
	(void)state;
	refused("bad_magic", "plugin 'bad_magic.so': bad magic 0x12345678, not an omserver plugin");
}

static void
test_bad_major(void **state)
{
	char want[128];

	(void)state;
	snprintf(want, sizeof(want), "plugin 'bad_major.so': ABI %d.0, worker supports %d.0-%d.%d",
	         OM_PLUGIN_ABI_MAJOR + 1, OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MAJOR,
	         OM_PLUGIN_ABI_MINOR);
	refused("bad_major", want);
}

static void
test_bad_minor(void **state)
{
	char want[128];

	(void)state;
	snprintf(want, sizeof(want), "plugin 'bad_minor.so': ABI %d.%d, worker supports %d.0-%d.%d",
	         OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MINOR + 1, OM_PLUGIN_ABI_MAJOR,
	         OM_PLUGIN_ABI_MAJOR, OM_PLUGIN_ABI_MINOR);
	refused("bad_minor", want);
}

static void
test_bad_size(void **state)
{
	char want[128];

	(void)state;
	snprintf(want, sizeof(want),
	         "plugin 'bad_size.so': descriptor is 16 bytes, worker needs "
	         "at least %zu",
	         offsetof(struct om_plugin, flags));
	refused("bad_size", want);
}

static void
test_no_symbol(void **state)
{
	(void)state;
	refused("no_symbol", "plugin 'no_symbol.so': no om_plugin_descriptor() symbol");
}

static void
test_duplicate(void **state)
{
	const char *names[] = {"dup_a", "dup_b", NULL};
	char *dir = plugin_dir(names), *log;
	struct om_plugins *p;

	(void)state;
	p = load_logged(dir, NULL, &log);
	assert_int_equal(om_plugins_count(p), 1);
	assert_string_equal(om_plugins_find(p, "testdup")->desc->version, "1.0");
	assert_log_has(
	        log,
	        "plugin 'dup_b.so': module 'testdup' version 2.0 already loaded (version 1.0)");
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

static void
test_init_refuses(void **state)
{
	(void)state;
	refused("init_refuses", "plugin 'init_refuses.so': module 'initrefuses' refused to start "
	                        "(init returned -1)");
}

static void
test_no_host_start(void **state)
{
	(void)state;
	refused("no_start", "plugin 'no_start.so': module 'nostart' has no host_start");
}

static void
test_spare_set(void **state)
{
	(void)state;
	refused("spare_set", "plugin 'spare_set.so': module 'spareset': spare slot 1 is not NULL");
}

static void
test_unknown_flag(void **state)
{
	(void)state;
	refused("unknown_flag", "plugin 'unknown_flag.so': module 'unknownflag': unknown flag bits "
	                        "0x80 (built for a newer ABI?), worker knows 0x1");
}

static void
test_flags_v0(void **state)
{
	(void)state;
	refused("flags_v0", "plugin 'flags_v0.so': module 'flagsv0': flags 0x1 need ABI 1.1, "
	                    "descriptor says 1.0");
}

/* A 1.0 plugin loads as before, not idempotent; a 1.1 one says so in the catalog. */
static void
test_flags(void **state)
{
	const char *names[] = {"abi_v0", "good_one", "idempotent", NULL};
	char *dir = plugin_dir(names), *log;
	struct om_module_info *cat;
	struct om_plugins *p;
	uint32_t n;

	(void)state;
	p = load_logged(dir, NULL, &log);
	assert_int_equal(om_plugins_count(p), 3);
	assert_int_equal(om_plugins_catalog(p, &cat, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(cat[0].name, "abiv0");
	assert_false(cat[0].idempotent);
	assert_string_equal(cat[1].name, "testgood");
	assert_false(cat[1].idempotent);
	assert_string_equal(cat[2].name, "idem");
	assert_true(cat[2].idempotent);
	om_modules_free(cat, n);
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

static void
test_bad_name(void **state)
{
	(void)state;
	refused("bad_name", "plugin 'bad_name.so': invalid module name");
}

static void
test_missing_dir(void **state)
{
	struct om_plugins *p;
	char *log;

	(void)state;
	p = load_logged("/nonexistent/om-plugins", "/nonexistent/om-modules", &log);
	assert_int_equal(om_plugins_count(p), 0);
	assert_log_has(log, "plugin directory '/nonexistent/om-plugins' cannot be read");
	om_free(log);
	om_plugins_free(p);
}

/* More files than the registry holds: the listing stops at the bound. */
static void
test_count_bound(void **state)
{
	char *dir = plugin_dir(NULL), *log, from[PATH_MAX * 2], to[PATH_MAX * 2];
	struct om_plugins *p;

	(void)state;
	snprintf(from, sizeof(from), "%s/tests/plugins/good_two.so", build_dir);
	for (int i = 0; i < 130; i++) {
		snprintf(to, sizeof(to), "%s/p%03d.so", dir, i);
		copy_file(from, to);
	}
	p = load_logged(dir, NULL, &log);
	assert_int_equal(om_plugins_count(p), 1);
	assert_log_has(log, "more than 128 .so files, the rest are ignored");
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

static void
test_builtins(void **state)
{
	static const char *const mods[] = {"shell", "command", "script",  "copy",    "fetch",
	                                   "ping",  "facts",   "service", "package", "noop"};
	char dir[PATH_MAX * 2], *log;
	struct om_plugins *p;
	struct om_module_info *cat;
	uint32_t n;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/plugins", build_dir);
	p = load_logged(dir, NULL, &log);
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++)
		if (om_plugins_find(p, mods[i]) == NULL)
			fail_msg("built-in module '%s' not loaded; log:\n%s", mods[i], log);
	assert_int_equal(om_plugins_catalog(p, &cat, &n), 0);
	for (uint32_t i = 0; i < n; i++) {
		/* read-only, or converging on a checksum: the rest may not run twice */
		bool idem = strcmp(cat[i].name, "ping") == 0 || strcmp(cat[i].name, "facts") == 0 ||
		            strcmp(cat[i].name, "fetch") == 0 || strcmp(cat[i].name, "copy") == 0 ||
		            strcmp(cat[i].name, "noop") == 0;

		if (cat[i].idempotent != idem)
			fail_msg("built-in module '%s': idempotent %d, want %d", cat[i].name,
			         cat[i].idempotent, idem);
		if (strcmp(cat[i].name, "copy") == 0)
			assert_non_null(
			        strstr(cat[i].schema, "\"name\":\"dest\",\"type\":\"path\""));
		if (strcmp(cat[i].name, "service") == 0)
			assert_non_null(strstr(cat[i].schema, "\"choices\":[\"started\""));
	}
	om_modules_free(cat, n);
	om_free(log);
	om_plugins_free(p);
}

static void
test_script_modules(void **state)
{
	const char *names[] = {"good_one", NULL};
	char *pdir = plugin_dir(names), *sdir = plugin_dir(NULL), *log, big[70 * 1024];
	char src[PATH_MAX * 2], dst[PATH_MAX * 2];
	const struct om_module *m;
	struct om_module_info *cat;
	struct om_plugins *p;
	uint32_t n;

	(void)state;
	snprintf(src, sizeof(src), "%s/tests/data/modules/echo-args", top_dir);
	snprintf(dst, sizeof(dst), "%s/echo-args", sdir);
	copy_file(src, dst);
	snprintf(src, sizeof(src), "%s/tests/data/modules/echo-args.json", top_dir);
	snprintf(dst, sizeof(dst), "%s/echo-args.json", sdir);
	copy_file(src, dst);
	write_text(sdir, "m1.json",
	           "{\"name\":\"m1\",\"version\":\"1\",\"executable\":\"../echo-args\"}");
	write_text(sdir, "m2.json",
	           "{\"name\":\"other\",\"version\":\"1\",\"executable\":\"echo-args\"}");
	write_text(sdir, "m3.json", "{\"name\":");
	write_text(sdir, "m4.json",
	           "{\"name\":\"m4\",\"version\":\"1\",\"executable\":\"echo-args\","
	           "\"params\":[{\"name\":\"x\",\"type\":\"nope\"}]}");
	write_text(sdir, "m5.json",
	           "{\"name\":\"m5\",\"version\":\"1\",\"executable\":\"nothere\"}");
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	write_text(sdir, "m6.json", big);
	write_text(sdir, "m7.json", "{\"name\":\"m7\",\"version\":\"1\",\"executable\":\"..\"}");
	write_text(sdir, "testgood.json",
	           "{\"name\":\"testgood\",\"version\":\"9\",\"executable\":\"echo-args\"}");
	p = load_logged(pdir, sdir, &log);
	assert_int_equal(om_plugins_count(p), 2);
	assert_non_null(m = om_plugins_find(p, "echo-args"));
	assert_string_equal(m->kind, "script");
	assert_non_null(m->desc->host_start);
	assert_int_equal(m->desc->nparams, 4);
	assert_string_equal(om_plugins_find(p, "testgood")->kind, "c");
	assert_log_has(log, "manifest 'm1.json': \"executable\" must be a file name in the same "
	                    "directory (no '/', no '..')");
	assert_log_has(log,
	               "manifest 'm2.json': \"name\" must be a valid name equal to the file's");
	assert_log_has(log, "manifest 'm3.json': ");
	assert_log_has(log, "manifest 'm4.json': params: ");
	assert_log_has(log, "manifest 'm5.json': executable 'nothere': ");
	assert_log_has(log, "manifest 'm6.json': larger than 64 KiB");
	assert_log_has(log, "manifest 'm7.json': \"executable\" must be a file name");
	assert_log_has(log, "script module 'testgood.json': module 'testgood' version 9 already "
	                    "loaded (version 1.0)");
	assert_int_equal(om_plugins_catalog(p, &cat, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(cat[1].name, "echo-args");
	assert_string_equal(cat[1].kind, "script");
	assert_string_equal(cat[1].version, "1.0.0");
	assert_non_null(strstr(cat[1].schema, "\"choices\":[\"red\",\"green\"]"));
	om_modules_free(cat, n);
	om_free(log);
	om_plugins_free(p);
	remove_dir(pdir);
	remove_dir(sdir);
}

/* The manifest's "idempotent": a JSON boolean, false when absent. */
static void
test_script_idempotent(void **state)
{
	char *sdir = plugin_dir(NULL), *log, src[PATH_MAX * 2], dst[PATH_MAX * 2];
	struct om_module_info *cat;
	struct om_plugins *p;
	uint32_t n;

	(void)state;
	snprintf(src, sizeof(src), "%s/tests/data/modules/echo-args", top_dir);
	snprintf(dst, sizeof(dst), "%s/echo-args", sdir);
	copy_file(src, dst);
	write_text(sdir, "i1.json",
	           "{\"name\":\"i1\",\"version\":\"1\",\"executable\":\"echo-args\","
	           "\"idempotent\":true}");
	write_text(sdir, "i2.json",
	           "{\"name\":\"i2\",\"version\":\"1\",\"executable\":\"echo-args\","
	           "\"idempotent\":false}");
	write_text(sdir, "i3.json",
	           "{\"name\":\"i3\",\"version\":\"1\",\"executable\":\"echo-args\"}");
	write_text(sdir, "i4.json",
	           "{\"name\":\"i4\",\"version\":\"1\",\"executable\":\"echo-args\","
	           "\"idempotent\":\"yes\"}");
	write_text(sdir, "i5.json",
	           "{\"name\":\"i5\",\"version\":\"1\",\"executable\":\"echo-args\","
	           "\"idempotent\":1}");
	p = load_logged(NULL, sdir, &log);
	assert_int_equal(om_plugins_count(p), 3);
	assert_null(om_plugins_find(p, "i4"));
	assert_null(om_plugins_find(p, "i5"));
	assert_log_has(log, "manifest 'i4.json': \"idempotent\" must be true or false");
	assert_log_has(log, "manifest 'i5.json': \"idempotent\" must be true or false");
	assert_int_equal(om_plugins_catalog(p, &cat, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(cat[0].name, "i1");
	assert_true(cat[0].idempotent);
	assert_string_equal(cat[1].name, "i2");
	assert_false(cat[1].idempotent);
	assert_string_equal(cat[2].name, "i3");
	assert_false(cat[2].idempotent);
	om_modules_free(cat, n);
	om_free(log);
	om_plugins_free(p);
	remove_dir(sdir);
}

/* An out-of-tree plugin built by tests/plugin_sdk.sh against the installed SDK. */
static void
test_sdk_plugin(void **state)
{
	const char *so = getenv("OM_TEST_SDK_PLUGIN");
	char *dir, to[PATH_MAX * 2], *log;
	struct om_plugins *p;

	(void)state;
	if (so == NULL || *so == '\0')
		skip();
	dir = plugin_dir(NULL);
	snprintf(to, sizeof(to), "%s/hello.so", dir);
	copy_file(so, to);
	p = load_logged(dir, NULL, &log);
	if (om_plugins_find(p, "hello") == NULL)
		fail_msg("the SDK-built plugin did not load; log:\n%s", log);
	om_free(log);
	om_plugins_free(p);
	remove_dir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_good),           cmocka_unit_test(test_bad_magic),
	        cmocka_unit_test(test_bad_major),      cmocka_unit_test(test_bad_minor),
	        cmocka_unit_test(test_bad_size),       cmocka_unit_test(test_no_symbol),
	        cmocka_unit_test(test_duplicate),      cmocka_unit_test(test_init_refuses),
	        cmocka_unit_test(test_no_host_start),  cmocka_unit_test(test_spare_set),
	        cmocka_unit_test(test_unknown_flag),   cmocka_unit_test(test_flags_v0),
	        cmocka_unit_test(test_flags),          cmocka_unit_test(test_script_idempotent),
	        cmocka_unit_test(test_bad_name),       cmocka_unit_test(test_missing_dir),
	        cmocka_unit_test(test_count_bound),    cmocka_unit_test(test_builtins),
	        cmocka_unit_test(test_script_modules), cmocka_unit_test(test_sdk_plugin),
	};

	find_dirs();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
