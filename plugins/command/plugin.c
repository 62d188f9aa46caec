/*
 * The command module: runs a program without a shell.  cmd is split into
 * words with sh's quoting rules but no expansion, and each word reaches the
 * host quoted, so "echo $HOME" prints $HOME and "a; b" is one argument.
 */
#include "../common/omp.h"

static const struct om_plugin_param command_params[] = {
        {"cmd", "string", 1, NULL, "program and arguments; quotes group words, nothing expands",
         NULL, OM_PARAM_FREE_FORM},
        {"chdir", "path", 0, NULL, "directory to run the program in", NULL, 0},
};

/* "cd DIR && exec W1 W2 ...", every piece through quote(). */
static char *
command_with_dir(const struct om_host_api *api, struct om_host_ctx *h, const char *dir, char **argv)
{
	size_t len = 0, i;
	char *q, *out, *o;
	char **qs;
	int n;

	for (n = 0; argv[n] != NULL; n++)
		;
	if ((qs = api->alloc(h, sizeof(*qs) * ((size_t)n + 1))) == NULL)
		return NULL;
	if ((qs[n] = omp_quote(api, h, dir)) == NULL)
		return NULL;
	len = strlen(qs[n]) + 16;
	for (i = 0; i < (size_t)n; i++) {
		if ((qs[i] = omp_quote(api, h, argv[i])) == NULL)
			return NULL;
		len += strlen(qs[i]) + 1;
	}
	if ((out = api->alloc(h, len)) == NULL)
		return NULL;
	o = out + sprintf(out, "cd %s && exec", qs[n]);
	for (i = 0; i < (size_t)n; i++) {
		q = qs[i];
		o += sprintf(o, " %s", q);
	}
	return out;
}

static int
command_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *cmd = omp_param(api, h, "cmd"), *dir = omp_param(api, h, "chdir");
	const char *why = NULL, *full = NULL;
	char **argv;
	int rc, n;

	if (cmd == NULL) {
		omp_fail(api, h, -1, "parameter 'cmd' is required");
		return OM_PLUGIN_EINVAL;
	}
	if ((n = omp_split(api, h, cmd, &argv, &why)) < 0) {
		omp_fail(api, h, -1, "parameter 'cmd': %s", why);
		return OM_PLUGIN_EINVAL;
	}
	if (n == 0) {
		omp_fail(api, h, -1, "parameter 'cmd' has no program");
		return OM_PLUGIN_EINVAL;
	}
	if (api->check_mode(h)) {
		rc = api->set_result(h, "{\"skipped\":true,\"msg\":\"not run in check mode\"}", 0);
		api->finish(h, OM_PLUGIN_OK, -1, NULL);
		return rc < 0 ? rc : 0;
	}
	if (dir != NULL && (full = command_with_dir(api, h, dir, argv)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	rc = api->exec(h, full, full ? NULL : (const char *const *)argv, NULL, 0, OM_EXEC_STREAM, 0,
	               omp_exec_done, (void *)(uintptr_t)api);
	if (rc < 0) {
		omp_fail(api, h, -1, "command did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin command_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "command",
        .version = "1.0.0",
        .description = "run a program with arguments, without a shell",
        .params = command_params,
        .nparams = sizeof(command_params) / sizeof(command_params[0]),
        .init = omp_init,
        .host_start = command_start,
};

OM_PLUGIN_DECLARE(command_plugin)
