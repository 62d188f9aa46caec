#include "om/err.h"

const char *
om_strerror(int err)
{
	switch (err) {
	case OM_OK:
		return "success";
#define OM_ERR_CASE(name, val, text)                                                               \
	case OM_##name:                                                                            \
		return text;
		OM_ERRNO_MAP(OM_ERR_CASE)
#undef OM_ERR_CASE
	}
	return "unknown error";
}
