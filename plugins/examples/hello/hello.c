/*
 * An out-of-tree omserver module: greets someone on every host.  Built only
 * against the installed SDK (pkg-config omserver-plugin); see README.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <omserver/plugin.h>

static const struct om_plugin_param hello_params[] = {
        {"name", "string", 0, "world", "who to greet", NULL, OM_PARAM_FREE_FORM},
};

static void
hello_done(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	const struct om_host_api *api = arg;
	char reason[64];

	if (rc < 0) {
		api->finish(h, OM_PLUGIN_FAILED, -1, "echo did not run");
		return;
	}
	if (res->exit_status != 0) {
		snprintf(reason, sizeof(reason), "exit status %d", res->exit_status);
		api->finish(h, OM_PLUGIN_FAILED, res->exit_status, reason);
		return;
	}
	api->set_result(h, "{\"greeted\":true}", 0);
	api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static int
hello_init(const struct om_host_api *api, void **state)
{
	/* A plugin built against a newer header would check for newer functions here. */
	if (api->api_version < 1)
		return -1;
	*state = (void *)(uintptr_t)api;
	return 0;
}

static int
hello_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *name = api->param(h, "name");
	/* argv, not a shell string: the host quotes every word, name cannot inject. */
	const char *argv[] = {"echo", "hello,", name ? name : "world", NULL};
	int rc;

	rc = api->exec(h, NULL, argv, NULL, 0, OM_EXEC_STREAM, 0, hello_done,
	               (void *)(uintptr_t)api);
	if (rc < 0) {
		api->finish(h, OM_PLUGIN_FAILED, -1, "echo did not start");
		return rc;
	}
	return 0;
}

static const struct om_plugin hello_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "hello",
        .version = "1.0.0",
        .description = "say hello on every host (SDK example)",
        .params = hello_params,
        .nparams = sizeof(hello_params) / sizeof(hello_params[0]),
        .init = hello_init,
        .host_start = hello_start,
        /* echo changes nothing: if its worker dies, the host may simply run it again */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(hello_plugin)
