/* Test plugin for tests/unit/plugins_test.c: init returns non-zero */
#include <omserver/plugin.h>

static int
t_init(const struct om_host_api *api, void **state)
{
	(void)api;
	(void)state;
	return -1;
}

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
        .name = "initrefuses",
        .version = "1.0",
        .description = "test plugin",
        .init = t_init,
        .host_start = t_start,

};

OM_PLUGIN_DECLARE(desc)
