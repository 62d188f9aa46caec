/*
 * The shell module: runs "cmd" through the remote sh, as Ansible's shell
 * module does.  cmd is the user's own shell text and is not quoted; only
 * chdir, which is data, goes through quote().  The exit status decides.
 */
#include "../common/omp.h"

static const struct om_plugin_param shell_params[] = {
        {"cmd", "string", 1, NULL, "shell command line to run on each host", NULL,
         OM_PARAM_FREE_FORM},
        {"chdir", "path", 0, NULL, "directory to run the command in", NULL, 0},
};

static int
shell_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *cmd = omp_param(api, h, "cmd"), *dir = omp_param(api, h, "chdir");
	const char *full = cmd;
	int rc;

	if (cmd == NULL) {
		omp_fail(api, h, -1, "parameter 'cmd' is required");
		return OM_PLUGIN_EINVAL;
	}
	if (api->check_mode(h)) {
		/* The text can do anything: there is nothing to predict. */
		rc = api->set_result(h, "{\"skipped\":true,\"msg\":\"not run in check mode\"}", 0);
		api->finish(h, OM_PLUGIN_OK, -1, NULL);
		return rc < 0 ? rc : 0;
	}
	if (dir != NULL) {
		const char *q = omp_quote(api, h, dir);

		/* A newline, not &&: cmd may be a list whose first part would bind to cd. */
		full = q ? omp_fmt(api, h, "cd %s || exit 1\n%s", q, cmd) : NULL;
	}
	if (full == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	if ((rc = api->exec(h, full, NULL, NULL, 0, OM_EXEC_STREAM, 0, omp_exec_done,
	                    (void *)(uintptr_t)api)) < 0) {
		omp_fail(api, h, -1, "command did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin shell_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "shell",
        .version = "1.0.0",
        .description = "run a command line through the remote shell",
        .params = shell_params,
        .nparams = sizeof(shell_params) / sizeof(shell_params[0]),
        .init = omp_init,
        .host_start = shell_start,
};

OM_PLUGIN_DECLARE(shell_plugin)
