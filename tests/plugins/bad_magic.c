/* Test plugin for tests/unit/plugins_test.c: wrong magic */
#include <omserver/plugin.h>

static int
t_start(void *state, struct om_host_ctx *h)
{
	(void)state;
	(void)h;
	return 0;
}

static const struct om_plugin desc = {
        .magic = 0x12345678u,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "badmagic",
        .version = "1.0",
        .description = "test plugin",
        .init = 0,
        .host_start = t_start,

};

OM_PLUGIN_DECLARE(desc)
