/* Test plugin for tests/unit/plugins_test.c: a module that promises idempotence */
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
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "idem",
        .version = "1.0",
        .description = "test plugin",
        .init = 0,
        .host_start = t_start,
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(desc)
