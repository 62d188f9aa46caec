/*
 * The service module: systemd units.  `systemctl is-active` first, so that
 * starting a running unit (or stopping a stopped one) reports no change and
 * check mode can say what would happen without touching anything.
 */
#include "../common/omp.h"

static const char *const service_states[] = {"started", "stopped", "restarted", "status", NULL};

static const struct om_plugin_param service_params[] = {
        {"name", "string", 1, NULL, "systemd unit, e.g. nginx or nginx.service", NULL,
         OM_PARAM_FREE_FORM},
        {"state", "choice", 1, NULL, "what the unit should be", service_states, 0},
};

struct service_host {
	const struct om_host_api *api;
	const char *name, *qname, *state;
	int active; /* before, then after */
	int changed;
};

static void
service_result(struct service_host *s, struct om_host_ctx *h)
{
	const struct om_host_api *api = s->api;
	struct omp_json j = {0};
	int first = 1, rc;

	omp_json_lit(&j, "{");
	omp_json_kstr(&j, &first, "name", s->name);
	omp_json_kstr(&j, &first, "state", s->state);
	omp_json_kbool(&j, &first, "active", s->active);
	omp_json_lit(&j, "}");
	if ((rc = omp_json_result(api, h, &j, s->changed)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static void
service_acted(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct service_host *s = arg;

	if (rc < 0) {
		omp_fail(s->api, h, -1, "systemctl did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->exit_status != 0) {
		omp_fail(s->api, h, res->exit_status, "systemctl failed with exit status %d",
		         res->exit_status);
		return;
	}
	s->active = strcmp(s->state, "stopped") != 0;
	service_result(s, h);
}

static void
service_queried(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct service_host *s = arg;
	const struct om_host_api *api = s->api;
	const char *verb;
	char *cmd;

	if (rc < 0) {
		omp_fail(api, h, -1, "systemctl is-active did not run: %s", omp_strerror(rc));
		return;
	}
	/* is-active exits 3 for an inactive unit: the words decide, not the status. */
	if (res->exit_status == 127 || res->out == NULL) {
		omp_fail(api, h, res->exit_status, "systemctl not found on the host");
		return;
	}
	s->active = res->out_len >= 6 && memcmp(res->out, "active", 6) == 0 &&
	            (res->out_len == 6 || res->out[6] == '\n');
	if (strcmp(s->state, "status") == 0) {
		service_result(s, h);
		return;
	}
	if (strcmp(s->state, "started") == 0) {
		s->changed = !s->active;
		verb = "start";
	} else if (strcmp(s->state, "stopped") == 0) {
		s->changed = s->active;
		verb = "stop";
	} else {
		s->changed = 1;
		verb = "restart";
	}
	if (!s->changed || api->check_mode(h)) {
		service_result(s, h);
		return;
	}
	if ((cmd = omp_fmt(api, h, "systemctl %s -- %s", verb, s->qname)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_STREAM, 0, service_acted, s)) < 0)
		omp_fail(api, h, -1, "systemctl did not start: %s", omp_strerror(rc));
}

static int
service_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	struct service_host *s;
	char *cmd;
	int i, rc;

	if ((s = api->alloc(h, sizeof(*s))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	memset(s, 0, sizeof(*s));
	s->api = api;
	if ((s->name = omp_param(api, h, "name")) == NULL || s->name[0] == '-') {
		omp_fail(api, h, -1, "parameter 'name' must be a unit name");
		return OM_PLUGIN_EINVAL;
	}
	s->state = omp_param(api, h, "state");
	for (i = 0; s->state != NULL && service_states[i] != NULL; i++)
		if (strcmp(s->state, service_states[i]) == 0)
			break;
	if (s->state == NULL || service_states[i] == NULL) {
		omp_fail(api, h, -1,
		         "parameter 'state' must be one of started, stopped, restarted, status");
		return OM_PLUGIN_EINVAL;
	}
	if ((s->qname = omp_quote(api, h, s->name)) == NULL ||
	    (cmd = omp_fmt(api, h, "systemctl is-active -- %s", s->qname)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE, 4096, service_queried, s)) <
	    0) {
		omp_fail(api, h, -1, "systemctl is-active did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin service_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "service",
        .version = "1.0.0",
        .description = "start, stop, restart or query a systemd unit",
        .params = service_params,
        .nparams = sizeof(service_params) / sizeof(service_params[0]),
        .init = omp_init,
        .host_start = service_start,
};

OM_PLUGIN_DECLARE(service_plugin)
