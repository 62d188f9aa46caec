/*
 * The package module: apt-get or dnf, whichever the host has.  The package
 * database is asked first (dpkg-query, rpm -q), so only packages that need
 * it are installed or removed and "changed" is exact.  Check mode runs the
 * manager's own dry run (apt-get -s, dnf --assumeno) and changes nothing.
 */
#include "../common/omp.h"

#define PACKAGE_MAX_NAMES 64
#define PACKAGE_MAX_NAME  128

static const char *const package_states[] = {"present", "absent", NULL};

static const struct om_plugin_param package_params[] = {
        {"name", "string", 1, NULL, "package name, or several separated by spaces", NULL,
         OM_PARAM_FREE_FORM},
        {"state", "choice", 0, "present", "present (installed) or absent (removed)", package_states,
         0},
};

struct package_host {
	const struct om_host_api *api;
	const char *names_text, *state, *manager;
	char *names[PACKAGE_MAX_NAMES];
	const char *qnames[PACKAGE_MAX_NAMES];
	int installed[PACKAGE_MAX_NAMES];
	int todo[PACKAGE_MAX_NAMES];
	size_t n, ntodo;
	int present, changed;
};

/* Debian and RPM package names; never an option (first character alphanumeric). */
static int
package_name_ok(const char *s)
{
	size_t i;

	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')))
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (i >= PACKAGE_MAX_NAME ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '+' || c == '-' || c == ':' || c == '_'))
			return 0;
	}
	return 1;
}

static void
package_result(struct package_host *p, struct om_host_ctx *h)
{
	const struct om_host_api *api = p->api;
	struct omp_json j = {0};
	int first = 1, rc;
	size_t i, k = 0;

	omp_json_lit(&j, "{");
	omp_json_kstr(&j, &first, "name", p->names_text);
	omp_json_kstr(&j, &first, "state", p->state);
	omp_json_kstr(&j, &first, "manager", p->manager);
	omp_json_kbool(&j, &first, "changed", p->changed);
	omp_json_key(&j, &first, "packages");
	omp_json_lit(&j, "[");
	for (i = 0; i < p->n; i++) {
		if (!p->todo[i])
			continue;
		if (k++ > 0)
			omp_json_lit(&j, ",");
		omp_json_str(&j, p->names[i]);
	}
	omp_json_lit(&j, "]}");
	if ((rc = omp_json_result(api, h, &j, p->changed)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static void
package_ran(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct package_host *p = arg;
	int dry = p->api->check_mode(h);

	if (rc < 0) {
		omp_fail(p->api, h, -1, "%s did not run: %s", p->manager, omp_strerror(rc));
		return;
	}
	/* dnf --assumeno answers "no" and exits 1 when there was something to do. */
	if (res->exit_status != 0 &&
	    !(dry && strcmp(p->manager, "dnf") == 0 && res->exit_status == 1)) {
		omp_fail(p->api, h, res->exit_status, "%s failed with exit status %d", p->manager,
		         res->exit_status);
		return;
	}
	package_result(p, h);
}

/* Parses "manager=X" and "installed=NAME" lines. */
static int
package_parse(struct package_host *p, const uint8_t *out, size_t len)
{
	const char *s = (const char *)out, *end = s + len;
	size_t i;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = (size_t)((nl ? nl : end) - s);

		if (n == 11 && memcmp(s, "manager=apt", 11) == 0)
			p->manager = "apt";
		else if (n == 11 && memcmp(s, "manager=dnf", 11) == 0)
			p->manager = "dnf";
		else if (n > 10 && memcmp(s, "installed=", 10) == 0)
			for (i = 0; i < p->n; i++)
				if (strlen(p->names[i]) == n - 10 &&
				    memcmp(p->names[i], s + 10, n - 10) == 0)
					p->installed[i] = 1;
		s += n + 1;
	}
	return p->manager ? 0 : -1;
}

static void
package_queried(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct package_host *p = arg;
	const struct om_host_api *api = p->api;
	int dry = api->check_mode(h);
	char *cmd;
	size_t i;

	if (rc < 0) {
		omp_fail(api, h, -1, "package query did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->out == NULL || package_parse(p, res->out, res->out_len) != 0) {
		omp_fail(api, h, -1, "no supported package manager (apt-get, dnf) on the host");
		return;
	}
	for (i = 0; i < p->n; i++) {
		p->todo[i] = p->present ? !p->installed[i] : p->installed[i];
		p->ntodo += (size_t)p->todo[i];
	}
	p->changed = p->ntodo > 0;
	if (!p->changed) {
		package_result(p, h);
		return;
	}
	if (strcmp(p->manager, "apt") == 0)
		cmd = omp_fmt(api, h, "DEBIAN_FRONTEND=noninteractive apt-get %s-y -q %s",
		              dry ? "-s " : "", p->present ? "install" : "remove");
	else
		cmd = omp_fmt(api, h, "dnf %s %s", dry ? "--assumeno" : "-y",
		              p->present ? "install" : "remove");
	for (i = 0; cmd != NULL && i < p->n; i++)
		if (p->todo[i])
			cmd = omp_fmt(api, h, "%s %s", cmd, p->qnames[i]);
	if (cmd == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_STREAM, 0, package_ran, p)) < 0)
		omp_fail(api, h, -1, "%s did not start: %s", p->manager, omp_strerror(rc));
}

static int
package_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	struct package_host *p;
	const char *why = NULL;
	char **words, *list = NULL, *cmd;
	int n, rc;
	size_t i;

	if ((p = api->alloc(h, sizeof(*p))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	memset(p, 0, sizeof(*p));
	p->api = api;
	p->state = api->param(h, "state");
	if (p->state == NULL)
		p->state = "present";
	if (strcmp(p->state, "present") != 0 && strcmp(p->state, "absent") != 0) {
		omp_fail(api, h, -1, "parameter 'state' must be present or absent");
		return OM_PLUGIN_EINVAL;
	}
	p->present = strcmp(p->state, "present") == 0;
	if ((p->names_text = omp_param(api, h, "name")) == NULL) {
		omp_fail(api, h, -1, "parameter 'name' is required");
		return OM_PLUGIN_EINVAL;
	}
	if ((n = omp_split(api, h, p->names_text, &words, &why)) < 0) {
		omp_fail(api, h, -1, "parameter 'name': %s", why);
		return OM_PLUGIN_EINVAL;
	}
	if (n == 0 || n > PACKAGE_MAX_NAMES) {
		omp_fail(api, h, -1, "parameter 'name' needs 1 to %d package names",
		         PACKAGE_MAX_NAMES);
		return OM_PLUGIN_EINVAL;
	}
	for (i = 0; i < (size_t)n; i++) {
		if (!package_name_ok(words[i])) {
			omp_fail(api, h, -1, "parameter 'name': '%.*s' is not a package name",
			         PACKAGE_MAX_NAME, words[i]);
			return OM_PLUGIN_EINVAL;
		}
		p->names[i] = words[i];
		if ((p->qnames[i] = omp_quote(api, h, words[i])) == NULL) {
			omp_fail(api, h, -1, "out of memory");
			return OM_PLUGIN_ENOMEM;
		}
		list = omp_fmt(api, h, "%s %s", list ? list : "", p->qnames[i]);
		if (list == NULL) {
			omp_fail(api, h, -1, "out of memory");
			return OM_PLUGIN_ENOMEM;
		}
	}
	p->n = (size_t)n;
	cmd = omp_fmt(
	        api, h,
	        "if command -v apt-get >/dev/null 2>&1; then\n"
	        "  echo manager=apt\n"
	        "  for p in%s; do\n"
	        "    if dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'ok installed$'; "
	        "then echo \"installed=$p\"; fi\n"
	        "  done\n"
	        "elif command -v dnf >/dev/null 2>&1; then\n"
	        "  echo manager=dnf\n"
	        "  for p in%s; do\n"
	        "    if rpm -q --quiet \"$p\"; then echo \"installed=$p\"; fi\n"
	        "  done\n"
	        "fi\n",
	        list, list);
	if (cmd == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE, 64 * 1024, package_queried,
	                    p)) < 0) {
		omp_fail(api, h, -1, "package query did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin package_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "package",
        .version = "1.0.0",
        .description = "install or remove packages with apt-get or dnf",
        .params = package_params,
        .nparams = sizeof(package_params) / sizeof(package_params[0]),
        .init = omp_init,
        .host_start = package_start,
};

OM_PLUGIN_DECLARE(package_plugin)
