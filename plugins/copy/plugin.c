/*
 * The copy module: puts content (text) or src (a local file) at dest,
 * idempotently.  The remote checksum decides whether anything is written.
 *
 * SFTP always writes as the login user, whatever become says, so (as
 * Ansible does) the bytes go to a private temp file that user owns, made
 * by mktemp without become; one command, which does get become, then
 * verifies the checksum, copies the file next to dest (so the final mv is
 * an atomic rename on dest's filesystem and a reader never sees half a
 * file), sets mode/owner/group and renames it into place.  That is what
 * lets --become write where only root may.
 */
#include "../common/omp.h"
#include "../common/sha256.h"

static const struct om_plugin_param copy_params[] = {
        {"content", "string", 0, NULL, "text to write (instead of src)", NULL, 0},
        {"src", "file", 0, NULL, "local file to copy (instead of content)", NULL, 0},
        {"dest", "path", 1, NULL, "absolute remote path", NULL, 0},
        {"mode", "mode", 0, NULL, "octal mode, e.g. 0644 (default: the current one, else 0644)",
         NULL, 0},
        {"owner", "string", 0, NULL, "owner to set (needs become)", NULL, 0},
        {"group", "string", 0, NULL, "group to set (needs become)", NULL, 0},
};

static const char copy_prefix[] = "/tmp/.omserver-copy-";

struct copy_host {
	const struct om_host_api *api;
	const uint8_t *data;
	size_t len;
	char sha[65];
	const char *dest, *owner, *group;
	const char *qdest, *qowner, *qgroup;
	char *tmp;         /* the upload's temp file (mktemp), alloc() */
	const char *qtmp;  /* tmp quoted */
	char *fail_reason; /* kept while the temp file is removed, alloc() */
	int fail_code;
	unsigned mode;
	int has_mode;
	int content_changed, attr_changed;
};

static void
copy_result(struct copy_host *c, struct om_host_ctx *h)
{
	const struct om_host_api *api = c->api;
	int changed = c->content_changed || c->attr_changed, first = 1, rc;
	struct omp_json j = {0};

	omp_json_lit(&j, "{");
	omp_json_kstr(&j, &first, "dest", c->dest);
	omp_json_kstr(&j, &first, "sha256", c->sha);
	omp_json_kint(&j, &first, "size", (long long)c->len);
	omp_json_kbool(&j, &first, "changed", changed);
	omp_json_lit(&j, "}");
	if ((rc = omp_json_result(api, h, &j, changed)) < 0)
		omp_fail(api, h, -1, "result not recorded: %s", omp_strerror(rc));
	else
		api->finish(h, OM_PLUGIN_OK, 0, NULL);
}

static void
copy_cleaned(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct copy_host *c = arg;

	(void)rc;
	(void)res;
	c->api->finish(h, OM_PLUGIN_FAILED, c->fail_code, c->fail_reason);
}

/*
 * Fails the host after removing the temp file as the login user: it owns
 * the file, while the become user of the install (another than root) may
 * not be allowed to remove it from the sticky /tmp.
 */
static void copy_fail_cleanup(struct copy_host *c, struct om_host_ctx *h, int exit_code,
                              const char *fmt, ...) OM_PLUGIN_PRINTF(4, 5);
static void
copy_fail_cleanup(struct copy_host *c, struct om_host_ctx *h, int exit_code, const char *fmt, ...)
{
	const struct om_host_api *api = c->api;
	char reason[512], *cmd;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	c->fail_code = exit_code;
	if ((c->fail_reason = omp_fmt(api, h, "%s", reason)) == NULL ||
	    (cmd = omp_fmt(api, h, "rm -f %s", c->qtmp)) == NULL ||
	    api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
	              copy_cleaned, c) < 0)
		api->finish(h, OM_PLUGIN_FAILED, exit_code, reason);
}

/* The last non-empty line of captured stderr, for a failure reason ("" if none). */
static const char *
copy_stderr_line(struct copy_host *c, struct om_host_ctx *h, const struct om_exec_result *res)
{
	size_t end, start;
	char *line;

	if (res == NULL || res->err == NULL)
		return "";
	end = res->err_len;
	while (end > 0 && (res->err[end - 1] == '\n' || res->err[end - 1] == '\r'))
		end--;
	start = end;
	while (start > 0 && res->err[start - 1] != '\n')
		start--;
	if (end == start || end - start > 300)
		return "";
	if ((line = omp_fmt(c->api, h, ": %.*s", (int)(end - start), res->err + start)) == NULL)
		return "";
	return line;
}

static void
copy_installed(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct copy_host *c = arg;

	if (rc < 0) {
		copy_fail_cleanup(c, h, -1, "install did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->exit_status != 0) {
		copy_fail_cleanup(c, h, res->exit_status,
		                  "installing '%s' failed (exit status %d)%s", c->dest,
		                  res->exit_status, copy_stderr_line(c, h, res));
		return;
	}
	copy_result(c, h);
}

static void
copy_chmodded(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct copy_host *c = arg;

	if (rc < 0) {
		omp_fail(c->api, h, -1, "chmod did not run: %s", omp_strerror(rc));
		return;
	}
	if (res->exit_status != 0) {
		omp_fail(c->api, h, res->exit_status,
		         "setting the mode/owner of '%s' failed (exit "
		         "status %d)%s",
		         c->dest, res->exit_status, copy_stderr_line(c, h, res));
		return;
	}
	copy_result(c, h);
}

/* chmod/chown/chgrp on path (a shell word), appended to cmd. */
static char *
copy_attrs(struct copy_host *c, struct om_host_ctx *h, char *cmd, const char *qpath)
{
	const struct om_host_api *api = c->api;

	if (cmd != NULL)
		cmd = omp_fmt(api, h, "%schmod %04o %s\n", cmd, c->mode, qpath);
	if (cmd != NULL && c->owner != NULL)
		cmd = omp_fmt(api, h, "%schown -- %s %s\n", cmd, c->qowner, qpath);
	if (cmd != NULL && c->group != NULL)
		cmd = omp_fmt(api, h, "%schgrp -- %s %s\n", cmd, c->qgroup, qpath);
	return cmd;
}

static void
copy_uploaded(struct om_host_ctx *h, void *arg, int rc, const uint8_t *data, size_t len)
{
	struct copy_host *c = arg;
	const struct om_host_api *api = c->api;
	char rnd[17], *stage, *qstage, *cmd;

	(void)data;
	(void)len;
	if (rc < 0) {
		copy_fail_cleanup(c, h, -1, "upload to '%s' failed: %s", c->tmp, omp_strerror(rc));
		return;
	}
	/*
	 * The names live in shell variables so the trap's text is a constant:
	 * it removes the temp file and the staged copy on every way out, and
	 * n is emptied once the mv has consumed the staged copy.  The checksum
	 * is verified where the bytes landed, so a short or corrupted transfer
	 * never replaces dest; cp creates the staged copy 0600 like its
	 * source, so nobody reads it before chmod.
	 */
	omp_rand_hex(rnd, 16);
	stage = omp_fmt(api, h, "%s.omtmp.%s", c->dest, rnd);
	qstage = stage ? omp_quote(api, h, stage) : NULL;
	cmd = qstage ? omp_fmt(api, h,
	                       "set -e\nt=%s\nn=%s\ntrap 'rm -f \"$t\" \"$n\"' EXIT\n"
	                       "h=$(sha256sum < \"$t\")\n"
	                       "if [ \"${h%%%% *}\" != %s ]; then echo 'checksum mismatch after "
	                       "upload' >&2; exit 3; fi\n"
	                       "cp -- \"$t\" \"$n\"\n",
	                       c->qtmp, qstage, c->sha)
	             : NULL;
	cmd = copy_attrs(c, h, cmd, "\"$n\"");
	if (cmd != NULL)
		cmd = omp_fmt(api, h, "%smv -f -- \"$n\" %s\nn=\n", cmd, c->qdest);
	if (cmd == NULL) {
		copy_fail_cleanup(c, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_STREAM | OM_EXEC_CAPTURE, 4096,
	                    copy_installed, c)) < 0)
		copy_fail_cleanup(c, h, -1, "install did not start: %s", omp_strerror(rc));
}

static void
copy_tempfile(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct copy_host *c = arg;
	const struct om_host_api *api = c->api;

	if (omp_mktemp_done(api, h, rc, res, copy_prefix, &c->tmp) < 0)
		return;
	if ((c->qtmp = omp_quote(api, h, c->tmp)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	/* 0600: the data stays private to the login user until it is installed. */
	if ((rc = api->upload(h, c->tmp, c->data, c->len, 0600, copy_uploaded, c)) < 0)
		copy_uploaded(h, c, rc, NULL, 0);
}

/* Parses "HASH  -\nMODE OWNER GROUP\n" or "absent\n". 0, or -1 when it is neither. */
static int
copy_parse_state(struct copy_host *c, const uint8_t *out, size_t n)
{
	char buf[512], hash[65], owner[128], group[128];
	unsigned mode;

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, out, n);
	buf[n] = '\0';
	if (strcmp(buf, "absent\n") == 0) {
		c->content_changed = 1;
		c->attr_changed = 0; /* a new file gets them anyway */
		if (!c->has_mode)
			c->mode = 0644;
		return 0;
	}
	if (sscanf(buf, "%64[0-9a-f] -\n%o %127s %127s", hash, &mode, owner, group) != 4 ||
	    strlen(hash) != 64)
		return -1;
	c->content_changed = strcmp(hash, c->sha) != 0;
	if (!c->has_mode)
		c->mode = mode;
	c->attr_changed = (c->has_mode && mode != c->mode) ||
	                  (c->owner != NULL && strcmp(owner, c->owner) != 0) ||
	                  (c->group != NULL && strcmp(group, c->group) != 0);
	return 0;
}

static void
copy_stat(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	struct copy_host *c = arg;
	const struct om_host_api *api = c->api;
	char *cmd;

	if (rc < 0) {
		omp_fail(api, h, -1, "checksum of '%s' did not run: %s", c->dest, omp_strerror(rc));
		return;
	}
	if (res->exit_status != 0 || res->out == NULL ||
	    copy_parse_state(c, res->out, res->out_len) != 0) {
		omp_fail(api, h, res->exit_status, "cannot read '%s' on the host (exit status %d)",
		         c->dest, res->exit_status);
		return;
	}
	if ((!c->content_changed && !c->attr_changed) || api->check_mode(h)) {
		copy_result(c, h);
		return;
	}
	if (!c->content_changed) {
		if ((cmd = copy_attrs(c, h, omp_fmt(api, h, "set -e\n"), c->qdest)) == NULL) {
			omp_fail(api, h, -1, "out of memory");
			return;
		}
		if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_STREAM | OM_EXEC_CAPTURE, 4096,
		                    copy_chmodded, c)) < 0)
			omp_fail(api, h, -1, "chmod did not start: %s", omp_strerror(rc));
		return;
	}
	/* As the login user: it must own the file SFTP then writes. */
	if ((cmd = omp_fmt(api, h, "mktemp %sXXXXXXXXXX", copy_prefix)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE | OM_EXEC_NO_BECOME, 4096,
	                    copy_tempfile, c)) < 0)
		omp_fail(api, h, -1, "mktemp did not start: %s", omp_strerror(rc));
}

static int
copy_start(void *state, struct om_host_ctx *h)
{
	const struct om_host_api *api = state;
	const char *content = api->param(h, "content"), *mode = omp_param(api, h, "mode");
	struct copy_host *c;
	char *cmd, *end;
	int has_src, rc;

	if ((c = api->alloc(h, sizeof(*c))) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	memset(c, 0, sizeof(*c));
	c->api = api;
	has_src = api->param_bytes(h, "src", &c->data, &c->len) == 0;
	if (has_src == (content != NULL)) {
		omp_fail(api, h, -1,
		         "exactly one of parameter 'content' and parameter 'src' is needed");
		return OM_PLUGIN_EINVAL;
	}
	if (content != NULL) {
		c->data = (const uint8_t *)content;
		c->len = strlen(content);
	}
	if ((c->dest = omp_param(api, h, "dest")) == NULL || c->dest[0] != '/') {
		omp_fail(api, h, -1, "parameter 'dest' must be an absolute path");
		return OM_PLUGIN_EINVAL;
	}
	if (mode != NULL) {
		unsigned long m = strtoul(mode, &end, 8);

		if (*end != '\0' || m > 07777 || mode[0] == '-' || mode[0] == '+') {
			omp_fail(api, h, -1, "parameter 'mode': '%s' is not an octal mode", mode);
			return OM_PLUGIN_EINVAL;
		}
		c->mode = (unsigned)m;
		c->has_mode = 1;
	}
	c->owner = omp_param(api, h, "owner");
	c->group = omp_param(api, h, "group");
	omp_sha256_hex(c->data, c->len, c->sha);
	if ((c->qdest = omp_quote(api, h, c->dest)) == NULL ||
	    (c->owner && (c->qowner = omp_quote(api, h, c->owner)) == NULL) ||
	    (c->group && (c->qgroup = omp_quote(api, h, c->group)) == NULL) ||
	    (cmd = omp_fmt(api, h,
	                   "if [ -e %s ]; then sha256sum < %s && stat -c '%%a %%U %%G' %s; "
	                   "else echo absent; fi",
	                   c->qdest, c->qdest, c->qdest)) == NULL) {
		omp_fail(api, h, -1, "out of memory");
		return OM_PLUGIN_ENOMEM;
	}
	if ((rc = api->exec(h, cmd, NULL, NULL, 0, OM_EXEC_CAPTURE, 4096, copy_stat, c)) < 0) {
		omp_fail(api, h, -1, "checksum did not start: %s", omp_strerror(rc));
		return rc;
	}
	return 0;
}

static const struct om_plugin copy_plugin = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "copy",
        .version = "1.0.0",
        .description = "copy content or a local file to the hosts (checksum, mode, owner)",
        .params = copy_params,
        .nparams = sizeof(copy_params) / sizeof(copy_params[0]),
        .init = omp_init,
        .host_start = copy_start,
        /*
         * Converges on dest: the checksum decides, and dest is replaced by an
         * atomic rename, so an interrupted run leaves the old or the new file,
         * never half of one, and the next run finishes the job.  What an
         * interrupted run may leave is debris, never dest's state: its
         * private temp file in /tmp or a staged dest.omtmp.* copy, both mode
         * 0600, when it died before the trap could remove them.
         */
        .flags = OM_PLUGIN_IDEMPOTENT,
};

OM_PLUGIN_DECLARE(copy_plugin)
