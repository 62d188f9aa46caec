/*
 * The noop module: ends every host ok at once, without running anything.
 * It measures the platform's own dispatch path (submit, PostgreSQL, the
 * worker's long-poll, the report, the follower's wake-up) with no remote
 * work in it: `make bench` times submit -> result with it.
 *
 * The engine hands a host to a module with its session open, so the first
 * job on a host opens one; later jobs take it from the pool and no SSH
 * packet is sent at all.
 */
#include "../common/omp.h"

static int
noop_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;

	api->finish(h, OM_PLUGIN_OK, 0, NULL);
	return 0;
}

static const struct om_plugin noop_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "noop",
        .version = "1.0.0",
        .description = "do nothing and end ok (dispatch benchmarks)",
        .params = NULL,
        .nparams = 0,
        .init = omp_init,
        .host_start = noop_start,
        /* nothing runs on the host */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(noop_plugin)
