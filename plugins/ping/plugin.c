/*
 * The ping module: proves the whole path (SSH, auth, a shell, become when
 * asked) works by running echo and reading its answer back.
 */
#include "../common/omp.h"

static void
ping_done(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	const struct om_host_api *api = arg;

	if (rc < 0) {
		omp_fail(api, h, -1, "ping did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->exit_status != 0 || res->out_len != 5 || memcmp(res->out, "pong\n", 5) != 0) {
		omp_fail(api, h, res->exit_status, "unexpected answer to echo (exit status %d)",
		         res->exit_status);
		return;
	}
	if ((rc = api->set_result(h, "{\"ping\":\"pong\"}", 0)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static int
ping_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	int rc;

	if ((rc = api->exec(h, "echo pong", NULL, NULL, 0, OM_EXEC_CAPTURE, 64, ping_done,
	                    (void *)(uintptr_t)api)) < 0) {
		omp_fail(api, h, -1, "ping did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin ping_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "ping",
        .version = "1.0.0",
        .description = "check that the hosts answer (SSH, shell, become)",
        .params = NULL,
        .nparams = 0,
        .init = omp_init,
        .host_start = ping_start,
        /* echo only: the host is never changed */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(ping_plugin)
