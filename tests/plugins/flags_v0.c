/* Test plugin for tests/unit/plugins_test.c: flags in a descriptor that says ABI 1.0 */
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
        .abi_minor = 0,
        .struct_size = sizeof(struct om_plugin),
        .name = "flagsv0",
        .version = "1.0",
        .description = "test plugin",
        .init = 0,
        .host_start = t_start,
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(desc)
