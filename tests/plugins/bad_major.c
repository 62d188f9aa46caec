/* Test plugin for tests/unit/plugins_test.c: ABI major one past the worker's */
#include <omserver/plugin.h>

static int
t_start(void *state, struct om_host_ctx *h)
{
	(void)state;
	(void)h;
	return 0;
}

static const struct om_plugin desc = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR + 1,
        .abi_minor = 0,
        .struct_size = sizeof(struct om_plugin),
        .name = "badmajor",
        .version = "1.0",
        .description = "test plugin",
        .init = 0,
        .host_start = t_start,

};

OM_PLUGIN_DECLARE(desc)
