/* Test plugin for tests/unit/plugins_test.c: a well-formed plugin with init and fini */
#include <omserver/plugin.h>

static int
t_init(const struct om_host_api *api, void **state)
{
	static int token;

	if (api == 0 || api->api_version != OM_HOST_API_VERSION)
		return -1;
	*state = &token;
	return 0;
}

static void
t_fini(void *state)
{
	*(int *)state = 0;
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
        .name = "testgood",
        .version = "1.0",
        .description = "test plugin",
        .init = t_init,
        .host_start = t_start,
        .fini = t_fini,
};

OM_PLUGIN_DECLARE(desc)
