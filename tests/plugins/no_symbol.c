/* Test plugin for tests/unit/plugins_test.c: exports no descriptor function. */
#include <omserver/plugin.h>

OM_PLUGIN_EXPORT int om_not_a_descriptor(void);
int
om_not_a_descriptor(void)
{
	return 0;
}
