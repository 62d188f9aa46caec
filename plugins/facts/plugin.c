/*
 * The facts module: one POSIX sh script gathers what the inventory shows
 * about a host as key=value lines; the parsing happens here, in C, so the
 * host needs nothing beyond sh, awk and coreutils.
 */
#include "../common/omp.h"

#define FACTS_CAP   (256 * 1024)
#define FACTS_MAX_N 64 /* addresses, disks */

static const char facts_script[] =
        "echo \"hostname=$(uname -n)\"\n"
        "echo \"kernel=$(uname -r)\"\n"
        "echo \"arch=$(uname -m)\"\n"
        "if [ -r /etc/os-release ]; then\n"
        "  grep -E '^(ID|NAME|VERSION_ID|PRETTY_NAME)=' /etc/os-release | sed 's/^/os_/'\n"
        "fi\n"
        "echo \"cpus=$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)\"\n"
        "awk '/^MemTotal:/ { print \"memory_kb=\" $2 }' /proc/meminfo 2>/dev/null\n"
        "awk '{ printf \"uptime_s=%d\\n\", $1 }' /proc/uptime 2>/dev/null\n"
        "df -P -k 2>/dev/null | awk 'NR > 1 && $1 !~ /^(tmpfs|devtmpfs|overlay|none|udev)$/ {\n"
        "  m = $6; for (i = 7; i <= NF; i++) m = m \" \" $i; print \"disk=\" $2 \" \" $3 \" \" m "
        "}'\n"
        "if command -v ip >/dev/null 2>&1; then\n"
        "  ip -o addr show 2>/dev/null | awk '$2 != \"lo\" { print \"addr=\" $4 }'\n"
        "else\n"
        "  for a in $(hostname -I 2>/dev/null); do echo \"addr=$a\"; done\n"
        "fi\n";

struct facts_line {
	const char *v;
	size_t n;
};

struct facts {
	struct facts_line hostname, kernel, arch, cpus, memory, uptime;
	struct facts_line os_id, os_name, os_version, os_pretty;
	struct facts_line addr[FACTS_MAX_N], disk[FACTS_MAX_N];
	size_t naddr, ndisk;
};

static int
facts_is_num(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 18)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* A value as a JSON string; os-release quotes its values, the quotes are not data. */
static void
facts_str(struct omp_json *j, int *first, const char *key, const struct facts_line *l)
{
	const char *v = l->v;
	size_t n = l->n;

	omp_json_key(j, first, key);
	if (v == NULL) {
		omp_json_lit(j, "null");
		return;
	}
	if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
		v++;
		n -= 2;
	}
	omp_json_strn(j, v, n);
}

static void
facts_num(struct omp_json *j, int *first, const char *key, const struct facts_line *l)
{
	omp_json_key(j, first, key);
	if (l->v != NULL && facts_is_num(l->v, l->n))
		omp_json_raw(j, l->v, l->n);
	else
		omp_json_lit(j, "null");
}

/* "SIZE USED MOUNT" (mount last: it may hold spaces); 0 when it wrote an entry. */
static int
facts_disk(struct omp_json *j, int need_comma, const struct facts_line *l)
{
	const char *s = l->v, *end = l->v + l->n, *sp1, *sp2;
	int first = 1;

	sp1 = memchr(s, ' ', l->n);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	if (sp2 == NULL || !facts_is_num(s, (size_t)(sp1 - s)) ||
	    !facts_is_num(sp1 + 1, (size_t)(sp2 - sp1 - 1)))
		return -1;
	omp_json_lit(j, need_comma ? ",{" : "{");
	omp_json_key(j, &first, "mount");
	omp_json_strn(j, sp2 + 1, (size_t)(end - sp2 - 1));
	omp_json_key(j, &first, "size_kb");
	omp_json_raw(j, s, (size_t)(sp1 - s));
	omp_json_key(j, &first, "used_kb");
	omp_json_raw(j, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	omp_json_lit(j, "}");
	return 0;
}

static void
facts_parse(struct facts *f, const char *out, size_t len)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
	        {"hostname", offsetof(struct facts, hostname)},
	        {"kernel", offsetof(struct facts, kernel)},
	        {"arch", offsetof(struct facts, arch)},
	        {"cpus", offsetof(struct facts, cpus)},
	        {"memory_kb", offsetof(struct facts, memory)},
	        {"uptime_s", offsetof(struct facts, uptime)},
	        {"os_ID", offsetof(struct facts, os_id)},
	        {"os_NAME", offsetof(struct facts, os_name)},
	        {"os_VERSION_ID", offsetof(struct facts, os_version)},
	        {"os_PRETTY_NAME", offsetof(struct facts, os_pretty)},
	};
	const char *p = out, *end = out + len;
	size_t i;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;
		const char *le = nl ? nl : end;
		struct facts_line l;

		eq = memchr(p, '=', (size_t)(le - p));
		if (eq != NULL) {
			size_t klen = (size_t)(eq - p);

			l.v = eq + 1;
			l.n = (size_t)(le - eq - 1);
			if (klen == 4 && memcmp(p, "addr", 4) == 0) {
				if (f->naddr < FACTS_MAX_N)
					f->addr[f->naddr++] = l;
			} else if (klen == 4 && memcmp(p, "disk", 4) == 0) {
				if (f->ndisk < FACTS_MAX_N)
					f->disk[f->ndisk++] = l;
			} else {
				for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
					if (strlen(keys[i].key) == klen &&
					    memcmp(keys[i].key, p, klen) == 0)
						*(struct facts_line *)((char *)f + keys[i].off) = l;
			}
		}
		p = le + 1;
	}
}

static void
facts_done(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	const struct om_host_api *api = arg;
	struct facts *f;
	struct omp_json j = {0};
	int first = 1, ofirst = 1;
	size_t i, n;

	if (rc < 0) {
		omp_fail(api, h, -1, "facts script did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->out == NULL || res->out_len == 0) {
		omp_fail(api, h, res->exit_status, "facts script printed nothing (exit status %d)",
		         res->exit_status);
		return;
	}
	if ((f = api->alloc(h, sizeof(*f))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	memset(f, 0, sizeof(*f));
	facts_parse(f, (const char *)res->out, res->out_len);
	omp_json_lit(&j, "{");
	facts_str(&j, &first, "hostname", &f->hostname);
	omp_json_key(&j, &first, "os");
	omp_json_lit(&j, "{");
	facts_str(&j, &ofirst, "id", &f->os_id);
	facts_str(&j, &ofirst, "name", &f->os_name);
	facts_str(&j, &ofirst, "version", &f->os_version);
	facts_str(&j, &ofirst, "pretty_name", &f->os_pretty);
	omp_json_lit(&j, "}");
	facts_str(&j, &first, "kernel", &f->kernel);
	facts_str(&j, &first, "arch", &f->arch);
	facts_num(&j, &first, "cpus", &f->cpus);
	facts_num(&j, &first, "memory_kb", &f->memory);
	facts_num(&j, &first, "uptime_s", &f->uptime);
	omp_json_key(&j, &first, "addresses");
	omp_json_lit(&j, "[");
	for (i = 0; i < f->naddr; i++) {
		if (i > 0)
			omp_json_lit(&j, ",");
		omp_json_strn(&j, f->addr[i].v, f->addr[i].n);
	}
	omp_json_lit(&j, "]");
	omp_json_key(&j, &first, "disks");
	omp_json_lit(&j, "[");
	for (i = 0, n = 0; i < f->ndisk; i++)
		if (facts_disk(&j, n > 0, &f->disk[i]) == 0)
			n++;
	omp_json_lit(&j, "]}");
	if (res->truncated)
		api->log(h, 1, "facts output truncated at %d bytes", FACTS_CAP);
	if ((rc = omp_json_result(api, h, &j, 0)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static int
facts_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	int rc;

	if ((rc = api->exec(h, facts_script, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME,
	                    FACTS_CAP, facts_done, (void *)(uintptr_t)api)) < 0) {
		omp_fail(api, h, -1, "facts script did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin facts_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "facts",
        .version = "1.0.0",
        .description = "gather OS, kernel, CPU, memory, disks, addresses and uptime",
        .params = NULL,
        .nparams = 0,
        .init = omp_init,
        .host_start = facts_start,
        /* reads the host only; a second run just gathers fresher facts */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(facts_plugin)
