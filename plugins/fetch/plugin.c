/*
 * The fetch module: reads a remote file over SFTP and stores it in the
 * master's artifact store under its base name.  The host is not changed.
 */
#include "../common/omp.h"
#include "../common/sha256.h"

#define FETCH_DEFAULT_MAX "16777216"

static const struct om_plugin_param fetch_params[] = {
        {"src", "path", 1, NULL, "absolute remote path of the file to fetch", NULL,
         OM_PARAM_FREE_FORM},
        {"max_size", "int", 0, FETCH_DEFAULT_MAX, "largest file accepted, in bytes", NULL, 0},
};

struct fetch_host {
	const struct om_host_api *api;
	const char *src;
	size_t max;
};

static void
fetch_done(struct om_host_ctx *h, void *arg, int rc, const uint8_t *data, size_t len)
{
	struct fetch_host *f = arg;
	const struct om_host_api *api = f->api;
	const char *name = omp_basename(f->src);
	struct omp_json j = {0};
	char sha[65];
	int first = 1;

	if (rc == OM_PLUGIN_ERANGE) {
		omp_fail(api, h, -1, "'%s' is larger than max_size (%zu bytes)", f->src, f->max);
		return;
	}
	if (rc < 0) {
		omp_fail(api, h, -1, "download of '%s' failed: %s", f->src, omp_strerror(rc));
		return;
	}
	/* The artifact name is ours to pick; never an empty or dot name. */
	if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		name = "fetched";
	if ((rc = api->save_file(h, name, data, len)) < 0) {
		omp_fail(api, h, -1, "storing '%s' failed: %s", name, omp_strerror(rc));
		return;
	}
	omp_sha256_hex(data, len, sha);
	omp_json_lit(&j, "{");
	omp_json_kstr(&j, &first, "src", f->src);
	omp_json_kint(&j, &first, "size", (long long)len);
	omp_json_kstr(&j, &first, "sha256", sha);
	omp_json_kstr(&j, &first, "dest_name", name);
	omp_json_lit(&j, "}");
	if ((rc = omp_json_result(api, h, &j, 0)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static int
fetch_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *max = api->param(h, "max_size");
	struct fetch_host *f;
	int rc;

	if ((f = api->alloc(h, sizeof(*f))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	f->api = api;
	if ((f->src = omp_param(api, h, "src")) == NULL || f->src[0] != '/') {
		omp_fail(api, h, -1, "parameter 'src' must be an absolute path");
		return OM_PLUGIN_EINVAL;
	}
	if (omp_parse_size(max ? max : FETCH_DEFAULT_MAX, &f->max) != 0 || f->max == 0) {
		omp_fail(api, h, -1, "parameter 'max_size': '%s' is not a positive size",
		         max ? max : "");
		return OM_PLUGIN_EINVAL;
	}
	if ((rc = api->download(h, f->src, f->max, fetch_done, f)) < 0) {
		omp_fail(api, h, -1, "download of '%s' did not start: %s", f->src,
		         omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin fetch_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "fetch",
        .version = "1.0.0",
        .description = "fetch a file from the hosts into the artifact store",
        .params = fetch_params,
        .nparams = sizeof(fetch_params) / sizeof(fetch_params[0]),
        .init = omp_init,
        .host_start = fetch_start,
        /* reads the host only; a second run stores the same file again */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(fetch_plugin)
