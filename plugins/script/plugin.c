/*
 * The script module: uploads a local script (its bytes arrive as a "file"
 * parameter), runs it with optional arguments and removes it.
 *
 * The temp name comes from the host's mktemp, run as the login user, since
 * SFTP writes as that user whatever become says; an unpredictable name in
 * /tmp that mktemp created (0600, O_EXCL) cannot be raced by another user.
 */
#include "../common/omp.h"

static const struct om_plugin_param script_params[] = {
        {"script", "file", 1, NULL, "local script to upload and run (any interpreter via #!)", NULL,
         0},
        {"args", "string", 0, NULL, "arguments; quotes group words, nothing expands", NULL,
         OM_PARAM_FREE_FORM},
};

struct script_host {
	const struct om_host_api *api;
	const uint8_t *data;
	size_t len;
	char **argv;
	char *path; /* remote temp file, alloc() */
};

static const char script_prefix[] = "/tmp/.omserver-script-";

static void
script_ran(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct script_host *s = arg;

	omp_finish_exit(s->api, h, "script", rc, res);
}

/* After a failed upload: the mktemp file must not stay behind. */
static void
script_cleaned(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct script_host *s = arg;

	(void)rc;
	(void)res;
	omp_fail(s->api, h, -1, "upload of the script failed");
}

static void
script_uploaded(struct om_host_ctx *h, void *arg, int rc, const uint8_t *data, size_t len)
{
	struct script_host *s = arg;
	const struct om_host_api *api = s->api;
	const char *qp = omp_quote(api, h, s->path);
	char *cmd, *trap, *qtrap;
	size_t i;

	(void)data;
	(void)len;
	if (qp == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	if (rc < 0) {
		cmd = omp_fmt(api, h, "rm -f %s", qp);
		if (cmd == NULL ||
		    api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
		              script_cleaned, s) < 0)
			omp_fail(api, h, -1, "upload of the script failed: %s", omp_strerror(rc));
		return;
	}
	/* The EXIT trap keeps the script's status and removes it however it ends. */
	/* The trap's text is itself one word: the quoted name inside it is quoted again. */
	trap = omp_fmt(api, h, "rm -f %s", qp);
	qtrap = trap ? omp_quote(api, h, trap) : NULL;
	cmd = qtrap ? omp_fmt(api, h, "trap %s EXIT\nchmod 0700 %s && %s", qtrap, qp, qp) : NULL;
	for (i = 0; cmd != NULL && s->argv != NULL && s->argv[i] != NULL; i++) {
		const char *qa = omp_quote(api, h, s->argv[i]);

		cmd = qa ? omp_fmt(api, h, "%s %s", cmd, qa) : NULL;
	}
	if (cmd == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_STREAM, 0, script_ran, s)) < 0)
		omp_fail(api, h, -1, "script did not start: %s", omp_strerror(rc));
}

static void
script_tempfile(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct script_host *s = arg;
	const struct om_host_api *api = s->api;

	if (omp_mktemp_done(api, h, rc, res, script_prefix, &s->path) < 0)
		return;
	if ((rc = api->upload(h, s->path, s->data, s->len, 0700, script_uploaded, s)) < 0)
		script_uploaded(h, s, rc, NULL, 0);
}

static int
script_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *args = omp_param(api, h, "args"), *why = NULL;
	struct script_host *s;
	char *cmd;
	int rc;

	if ((s = api->alloc(h, sizeof(*s))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	memset(s, 0, sizeof(*s));
	s->api = api;
	if (api->param_bytes(h, "script", &s->data, &s->len) != 0) {
		omp_fail(api, h, -1, "parameter 'script' is required");
		return OM_PLUGIN_EINVAL;
	}
	if (args != NULL && omp_split(api, h, args, &s->argv, &why) < 0) {
		omp_fail(api, h, -1, "parameter 'args': %s", why);
		return OM_PLUGIN_EINVAL;
	}
	if (api->check_mode(h)) {
		rc = api->set_result(h, "{\"skipped\":true,\"msg\":\"not run in check mode\"}", 0);
		api->finish(h, OM_PLUGIN_OK, -1, NULL);
		return rc < 0 ? rc : 0;
	}
	cmd = omp_fmt(api, h, "mktemp %sXXXXXXXXXX", script_prefix);
	if (cmd == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
	                    script_tempfile, s)) < 0) {
		omp_fail(api, h, -1, "mktemp did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin script_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "script",
        .version = "1.0.0",
        .description = "upload a local script, run it, remove it",
        .params = script_params,
        .nparams = sizeof(script_params) / sizeof(script_params[0]),
        .init = omp_init,
        .host_start = script_start,
};

OM_PLUGIN_DECLARE(script_plugin)
