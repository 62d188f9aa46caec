/*
 * Tests for the built-in modules (build/plugins/<name>.so, loaded with dlopen as
 * the worker does) and script modules, driven through a fake host API.
 *
 * The fake keeps the asynchronous contract: exec, upload and download only
 * queue an operation, and run() performs them one at a time, calling back
 * later as the engine would.  It answers in one of two ways:
 *   scripted  canned results, and a record of every command, for checking
 *             the exact shell text a module builds;
 *   local     the command really runs through /bin/sh on this machine
 *             (uploads and downloads are local files, $HOME a temp dir), so
 *             quoting is tested by what sh does, not by what it looks like.
 * quote() is om_shell_quote, the function the worker's host API uses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "../../plugins/common/omp.h"
#include "../../plugins/common/sha256.h"
#include "om/base.h"
#include "plugins.h"

#define MAX_OPS 32

/* A parameter value that must never escape its quotes. */
#define EVIL "a'b; $(touch \"$HOME/pwned\") `touch \"$HOME/pwned2\"` \"c\"\n d\\ e"
/* The same as a file name (no '/'): sh runs it with $HOME as the working directory. */
#define EVIL_NAME "a'b; $(touch pwned) `touch pwned2` \"c\"\n d\\ e"

static char build_dir[PATH_MAX], top_dir[PATH_MAX];

struct reply {
	int rc, exit_status;
	const char *out, *err;
};

struct op {
	int kind; /* 'e' exec, 'u' upload, 'd' download */
	char *cmd;
	uint8_t *data; /* stdin or upload bytes */
	size_t len, cap, max;
	unsigned flags, mode;
	char *path;
	om_exec_cb ecb;
	om_xfer_cb xcb;
	void *arg;
};

struct om_host_ctx {
	const struct om_plugin *desc;
	const char *keys[16], *vals[16];
	size_t nparams;
	const char *file_param;
	const uint8_t *file_data;
	size_t file_len;
	int check, local;
	const char *home; /* local mode */
	struct reply replies[8];
	size_t nreplies, next_reply;
	const char *download_data; /* scripted mode */
	int upload_rc;             /* < 0: uploads fail with it, nothing written */
	int upload_corrupt;        /* local mode: the upload writes one byte changed */

	struct op ops[MAX_OPS];
	size_t nops, done_ops;
	char *cmds[MAX_OPS]; /* every exec, as shell text */
	unsigned cmd_flags[MAX_OPS];
	size_t ncmds;
	char *upload_path[MAX_OPS];
	size_t nuploads;
	char *saved_name;
	size_t saved_len;
	void *allocs[512];
	size_t nallocs;
	struct om_buf output;

	char *result;
	int changed, nfinish, state, exit_code;
	char reason[1024];
};

/* --- the fake host API ------------------------------------------------------------ */

static const char *
f_param(struct om_host_ctx *h, const char *name)
{
	for (size_t i = 0; i < h->nparams; i++)
		if (strcmp(h->keys[i], name) == 0)
			return h->vals[i];
	for (size_t i = 0; h->desc && i < h->desc->nparams; i++)
		if (strcmp(h->desc->params[i].name, name) == 0)
			return h->desc->params[i].default_value;
	return NULL;
}

static int
f_param_bytes(struct om_host_ctx *h, const char *name, const uint8_t **data, size_t *len)
{
	if (h->file_param == NULL || strcmp(h->file_param, name) != 0)
		return OM_PLUGIN_ENOTFOUND;
	*data = h->file_data;
	*len = h->file_len;
	return 0;
}

static int
f_check_mode(struct om_host_ctx *h)
{
	return h->check;
}

static const char *
f_host_name(struct om_host_ctx *h)
{
	(void)h;
	return "test-host";
}

static long
f_quote(const char *s, char *out, size_t cap)
{
	struct om_buf b;
	long n;

	om_buf_init(&b, 1 << 20);
	if (om_shell_quote(&b, s, strlen(s)) != 0 || b.len + 1 > cap) {
		om_buf_release(&b);
		return OM_PLUGIN_ERANGE;
	}
	memcpy(out, b.data, b.len);
	out[b.len] = '\0';
	n = (long)b.len;
	om_buf_release(&b);
	return n;
}

static int
f_exec(struct om_host_ctx *h, const char *cmd, const char *const *argv, const void *in,
       size_t in_len, unsigned flags, size_t cap, om_exec_cb cb, void *arg)
{
	struct op *o;
	struct om_buf b;

	assert_true((cmd == NULL) != (argv == NULL));
	assert_true(h->nops < MAX_OPS);
	o = &h->ops[h->nops++];
	memset(o, 0, sizeof(*o));
	o->kind = 'e';
	if (cmd != NULL) {
		o->cmd = strdup(cmd);
	} else {
		/* what the worker does with argv: each element one quoted word */
		om_buf_init(&b, 1 << 20);
		for (size_t i = 0; argv[i] != NULL; i++) {
			if (i > 0)
				om_buf_putc(&b, ' ');
			om_shell_quote(&b, argv[i], strlen(argv[i]));
		}
		om_buf_putc(&b, '\0');
		assert_int_equal(b.err, 0);
		o->cmd = strdup((char *)b.data);
		om_buf_release(&b);
	}
	if (in_len > 0) {
		o->data = malloc(in_len);
		memcpy(o->data, in, in_len);
		o->len = in_len;
	}
	o->flags = flags;
	o->cap = cap ? cap : 1 << 20;
	o->ecb = cb;
	o->arg = arg;
	h->cmds[h->ncmds] = strdup(o->cmd);
	h->cmd_flags[h->ncmds++] = flags;
	return 0;
}

static int
f_upload(struct om_host_ctx *h, const char *path, const void *data, size_t len, unsigned mode,
         om_xfer_cb cb, void *arg)
{
	struct op *o;

	assert_true(h->nops < MAX_OPS);
	o = &h->ops[h->nops++];
	memset(o, 0, sizeof(*o));
	o->kind = 'u';
	o->path = strdup(path);
	o->data = malloc(len + 1);
	memcpy(o->data, data, len);
	o->len = len;
	o->mode = mode;
	o->xcb = cb;
	o->arg = arg;
	h->upload_path[h->nuploads++] = strdup(path);
	return 0;
}

static int
f_download(struct om_host_ctx *h, const char *path, size_t max, om_xfer_cb cb, void *arg)
{
	struct op *o;

	assert_true(h->nops < MAX_OPS);
	o = &h->ops[h->nops++];
	memset(o, 0, sizeof(*o));
	o->kind = 'd';
	o->path = strdup(path);
	o->max = max;
	o->xcb = cb;
	o->arg = arg;
	return 0;
}

static void
f_emit(struct om_host_ctx *h, int stream, const void *data, size_t len)
{
	(void)stream;
	om_buf_append(&h->output, data, len);
}

static int
f_save_file(struct om_host_ctx *h, const char *name, const void *data, size_t len)
{
	(void)data;
	free(h->saved_name);
	h->saved_name = strdup(name);
	h->saved_len = len;
	return 0;
}

static int
f_set_result(struct om_host_ctx *h, const char *json, int changed)
{
	json_error_t e;
	json_t *o = json_loads(json, 0, &e);

	/* the worker would refuse anything but an object */
	if (!json_is_object(o))
		fail_msg("set_result with invalid JSON (%s): %s", e.text, json);
	json_decref(o);
	free(h->result);
	h->result = strdup(json);
	h->changed = changed;
	return 0;
}

static void
f_log(struct om_host_ctx *h, int level, const char *fmt, ...)
{
	(void)h;
	(void)level;
	(void)fmt;
}

static void
f_finish(struct om_host_ctx *h, int state, int exit_code, const char *reason)
{
	h->nfinish++;
	h->state = state;
	h->exit_code = exit_code;
	snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
}

static void *
f_alloc(struct om_host_ctx *h, size_t n)
{
	void *p;

	assert_true(h->nallocs < sizeof(h->allocs) / sizeof(h->allocs[0]));
	p = calloc(1, n ? n : 1);
	h->allocs[h->nallocs++] = p;
	return p;
}

static const struct om_host_api fake_api = {
        .api_version = OM_HOST_API_VERSION,
        .struct_size = sizeof(struct om_host_api),
        .param = f_param,
        .param_bytes = f_param_bytes,
        .check_mode = f_check_mode,
        .host_name = f_host_name,
        .exec = f_exec,
        .upload = f_upload,
        .download = f_download,
        .emit = f_emit,
        .save_file = f_save_file,
        .set_result = f_set_result,
        .log = f_log,
        .finish = f_finish,
        .alloc = f_alloc,
        .quote = f_quote,
};

/* --- running operations --------------------------------------------------------------- */

static uint8_t *
slurp(const char *path, size_t *len)
{
	uint8_t *data = NULL;

	*len = 0;
	if (om_read_file(path, 64 << 20, &data, len) != 0)
		return NULL;
	return data;
}

/* Runs cmd through /bin/sh with HOME=home; stdout and stderr into files. */
static void
local_exec(struct om_host_ctx *h, struct op *o)
{
	char in[] = "/tmp/om-mt-in-XXXXXX", out[] = "/tmp/om-mt-out-XXXXXX",
	     err[] = "/tmp/om-mt-err-XXXXXX";
	int fi = mkstemp(in), fo = mkstemp(out), fe = mkstemp(err), status;
	struct om_exec_result r = {0};
	uint8_t *od, *ed;
	size_t ol, el;
	pid_t pid;

	assert_true(fi >= 0 && fo >= 0 && fe >= 0);
	if (o->len > 0)
		assert_int_equal(write(fi, o->data, o->len), (ssize_t)o->len);
	lseek(fi, 0, SEEK_SET);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fi, 0);
		dup2(fo, 1);
		dup2(fe, 2);
		setenv("HOME", h->home, 1);
		if (chdir(h->home) != 0)
			_exit(126);
		execl("/bin/sh", "sh", "-c", o->cmd, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fi);
	close(fo);
	close(fe);
	od = slurp(out, &ol);
	ed = slurp(err, &el);
	unlink(in);
	unlink(out);
	unlink(err);
	r.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r.signal = WIFSIGNALED(status) ? "KILL" : NULL;
	if (ol > o->cap) {
		ol = o->cap;
		r.truncated = 1;
	}
	if (o->flags & OM_EXEC_CAPTURE) {
		r.out = od;
		r.out_len = ol;
		r.err = ed;
		r.err_len = el;
	}
	if (o->flags & OM_EXEC_STREAM) {
		om_buf_append(&h->output, od, ol);
		om_buf_append(&h->output, ed, el);
	}
	o->ecb(h, o->arg, 0, &r);
	om_free(od);
	om_free(ed);
}

static void
scripted_exec(struct om_host_ctx *h, struct op *o)
{
	struct om_exec_result r = {0};
	struct reply *rp;

	if (h->next_reply == h->nreplies)
		fail_msg("no scripted reply left for: %s", o->cmd);
	rp = &h->replies[h->next_reply++];
	if (rp->rc < 0) {
		o->ecb(h, o->arg, rp->rc, NULL);
		return;
	}
	r.exit_status = rp->exit_status;
	if (o->flags & OM_EXEC_CAPTURE) {
		r.out = (const uint8_t *)(rp->out ? rp->out : "");
		r.out_len = rp->out ? strlen(rp->out) : 0;
		r.err = (const uint8_t *)(rp->err ? rp->err : "");
		r.err_len = rp->err ? strlen(rp->err) : 0;
	} else if (rp->out != NULL) {
		om_buf_append(&h->output, rp->out, strlen(rp->out));
	}
	o->ecb(h, o->arg, 0, &r);
}

static void
do_op(struct om_host_ctx *h, struct op *o)
{
	uint8_t *data;
	size_t len;
	int fd;

	switch (o->kind) {
	case 'e':
		if (h->local)
			local_exec(h, o);
		else
			scripted_exec(h, o);
		break;
	case 'u':
		if (h->upload_rc < 0) {
			o->xcb(h, o->arg, h->upload_rc, NULL, 0);
			break;
		}
		if (h->local) {
			if (h->upload_corrupt && o->len > 0)
				o->data[0] ^= 1;
			fd = open(o->path, O_WRONLY | O_CREAT | O_TRUNC, o->mode);
			assert_true(fd >= 0);
			assert_int_equal(write(fd, o->data, o->len), (ssize_t)o->len);
			close(fd);
		}
		o->xcb(h, o->arg, 0, NULL, 0);
		break;
	case 'd':
		if (h->local) {
			data = slurp(o->path, &len);
		} else {
			data = (uint8_t *)(h->download_data ? strdup(h->download_data) : NULL);
			len = data ? strlen((char *)data) : 0;
		}
		if (data == NULL)
			o->xcb(h, o->arg, OM_PLUGIN_ENOTFOUND, NULL, 0);
		else if (len > o->max)
			o->xcb(h, o->arg, OM_PLUGIN_ERANGE, NULL, 0);
		else
			o->xcb(h, o->arg, 0, data, len);
		free(data);
		break;
	}
}

/* host_start, then every queued operation until the module finished. */
static void
run(struct om_host_ctx *h, const struct om_module *m)
{
	int rc;

	h->desc = m->desc;
	om_buf_init(&h->output, 1 << 20);
	rc = m->desc->host_start(m->state, h);
	if (rc < 0)
		assert_int_equal(h->nfinish, 1);
	while (h->done_ops < h->nops) {
		assert_int_equal(h->nfinish, 0); /* nothing may run after finish */
		do_op(h, &h->ops[h->done_ops++]);
	}
	assert_int_equal(h->nfinish, 1);
	om_buf_putc(&h->output, '\0');
}

static void
ctx_free(struct om_host_ctx *h)
{
	for (size_t i = 0; i < h->nops; i++) {
		free(h->ops[i].cmd);
		free(h->ops[i].data);
		free(h->ops[i].path);
	}
	for (size_t i = 0; i < h->ncmds; i++)
		free(h->cmds[i]);
	for (size_t i = 0; i < h->nuploads; i++)
		free(h->upload_path[i]);
	for (size_t i = 0; i < h->nallocs; i++)
		free(h->allocs[i]);
	free(h->saved_name);
	free(h->result);
	om_buf_release(&h->output);
	memset(h, 0, sizeof(*h));
}

static void
set(struct om_host_ctx *h, const char *k, const char *v)
{
	h->keys[h->nparams] = k;
	h->vals[h->nparams++] = v;
}

static void
reply(struct om_host_ctx *h, int exit_status, const char *out)
{
	h->replies[h->nreplies++] = (struct reply){0, exit_status, out, NULL};
}

static char *
quoted(const char *s)
{
	static char buf[1024];

	assert_true(f_quote(s, buf, sizeof(buf)) > 0);
	return buf;
}

/* --- fixtures --------------------------------------------------------------------------- */

static struct om_plugins *registry;
static char home[PATH_MAX];

static int
setup(void **state)
{
	char pdir[PATH_MAX * 2], sdir[PATH_MAX * 2], tmpl[] = "/tmp/om-mt-home-XXXXXX";

	(void)state;
	snprintf(pdir, sizeof(pdir), "%s/plugins", build_dir);
	snprintf(sdir, sizeof(sdir), "%s/tests/data/modules", top_dir);
	if (om_plugins_load(pdir, sdir, &fake_api, &registry) != 0)
		return -1;
	if (mkdtemp(tmpl) == NULL)
		return -1;
	snprintf(home, sizeof(home), "%s", tmpl);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	om_plugins_free(registry);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
	return system(cmd) == 0 ? 0 : -1;
}

static const struct om_module *
mod(const char *name)
{
	const struct om_module *m = om_plugins_find(registry, name);

	if (m == NULL)
		fail_msg("module '%s' not loaded", name);
	return m;
}

static int
exists(const char *dir, const char *name)
{
	char path[PATH_MAX * 2];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

static void
assert_no_escape(void)
{
	assert_false(exists(home, "pwned"));
	assert_false(exists(home, "pwned2"));
}

/* --- tests ------------------------------------------------------------------------------ */

static void
test_sha256_vectors(void **state)
{
	static const char *const in[] = {
	        "", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
	static const char *const want[] = {
	        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"};
	char hex[65], ref[65];
	uint8_t md[32], *big = malloc(1000000 + 77);

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		omp_sha256_hex(in[i], strlen(in[i]), hex);
		assert_string_equal(hex, want[i]);
	}
	memset(big, 'a', 1000000);
	omp_sha256_hex(big, 1000000, hex);
	assert_string_equal(hex,
	                    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	/* every length around the block and padding boundaries, against OpenSSL */
	for (size_t n = 0; n < 200; n++) {
		for (size_t k = 0; k < n; k++)
			big[k] = (uint8_t)(k * 7 + n);
		omp_sha256_hex(big, n, hex);
		EVP_Digest(big, n, md, NULL, EVP_sha256(), NULL);
		om_hex_encode(md, 32, ref);
		assert_string_equal(hex, ref);
	}
	free(big);
}

static void
test_split(void **state)
{
	struct om_host_ctx h = {0};
	const char *why = NULL;
	char **v;

	(void)state;
	assert_int_equal(
	        omp_split(&fake_api, &h, "echo $HOME 'a b' \"c \\\"d\\\"\" e\\ f ''", &v, &why), 6);
	assert_string_equal(v[0], "echo");
	assert_string_equal(v[1], "$HOME");
	assert_string_equal(v[2], "a b");
	assert_string_equal(v[3], "c \"d\"");
	assert_string_equal(v[4], "e f");
	assert_string_equal(v[5], "");
	assert_null(v[6]);
	assert_int_equal(omp_split(&fake_api, &h, "  a \\\n b  ", &v, &why), 2);
	assert_string_equal(v[1], "b");
	assert_int_equal(omp_split(&fake_api, &h, "", &v, &why), 0);
	assert_int_equal(omp_split(&fake_api, &h, "a 'b", &v, &why), -1);
	assert_string_equal(why, "unterminated single quote");
	assert_int_equal(omp_split(&fake_api, &h, "a \"b", &v, &why), -1);
	assert_string_equal(why, "unterminated double quote");
	assert_int_equal(omp_split(&fake_api, &h, "a\\", &v, &why), -1);
	assert_string_equal(why, "trailing backslash");
	ctx_free(&h);
}

static void
test_shell(void **state)
{
	struct om_host_ctx h = {0};
	char want[PATH_MAX * 3];

	(void)state;
	/* scripted: the exact text, chdir quoted */
	set(&h, "cmd", "echo hi | tr a-z A-Z");
	set(&h, "chdir", "/" EVIL);
	reply(&h, 0, "HI\n");
	run(&h, mod("shell"));
	snprintf(want, sizeof(want), "cd %s || exit 1\necho hi | tr a-z A-Z", quoted("/" EVIL));
	assert_string_equal(h.cmds[0], want);
	assert_true(h.cmd_flags[0] & OM_EXEC_STREAM);
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal(h.result, "{\"rc\":0}");
	ctx_free(&h);

	/* a non-zero exit fails the host with its status */
	set(&h, "cmd", "exit 3");
	reply(&h, 3, NULL);
	run(&h, mod("shell"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_int_equal(h.exit_code, 3);
	assert_string_equal(h.reason, "exit status 3");
	ctx_free(&h);

	/* local: sh really runs it in a directory with a hostile name */
	char dir[PATH_MAX * 2];

	snprintf(dir, sizeof(dir), "%s/%s", home, EVIL_NAME);
	assert_int_equal(mkdir(dir, 0700), 0);
	h.local = 1;
	h.home = home;
	set(&h, "cmd", "pwd");
	set(&h, "chdir", dir);
	run(&h, mod("shell"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	snprintf(want, sizeof(want), "%s\n", dir);
	assert_string_equal((char *)h.output.data, want);
	assert_no_escape();
	ctx_free(&h);

	/* check mode runs nothing; a missing cmd names the parameter */
	h.check = 1;
	set(&h, "cmd", "rm -rf /");
	run(&h, mod("shell"));
	assert_int_equal(h.ncmds, 0);
	assert_int_equal(h.changed, 0);
	ctx_free(&h);
	run(&h, mod("shell"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "parameter 'cmd' is required");
	ctx_free(&h);
}

static void
test_command(void **state)
{
	struct om_host_ctx h = {0};
	char want[8192];

	(void)state;
	h.local = 1;
	h.home = home;
	set(&h, "cmd", "printf '%s|' $HOME \"a b\" 'c;d' `id` $(id) \\$x");
	run(&h, mod("command"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal((char *)h.output.data, "$HOME|a b|c;d|`id`|$(id)|$x|");
	ctx_free(&h);

	/* chdir plus words, all quoted */
	h.local = 1;
	h.home = home;
	set(&h, "cmd",
	    "printf %s \""
	    "x'y; $(touch \\\"$HOME/pwned\\\")"
	    "\"");
	set(&h, "chdir", home);
	run(&h, mod("command"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal((char *)h.output.data, "x'y; $(touch \"$HOME/pwned\")");
	snprintf(want, sizeof(want), "cd %s && exec", quoted(home));
	assert_memory_equal(h.cmds[0], want, strlen(want));
	assert_no_escape();
	ctx_free(&h);

	set(&h, "cmd", "echo 'unterminated");
	run(&h, mod("command"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "parameter 'cmd': unterminated single quote");
	assert_int_equal(h.ncmds, 0);
	ctx_free(&h);
}

static void
test_script(void **state)
{
	static const char body[] = "#!/bin/sh\necho \"script-ran [$1] [$2]\"\n";
	struct om_host_ctx h = {0};

	(void)state;
	h.local = 1;
	h.home = home;
	h.file_param = "script";
	h.file_data = (const uint8_t *)body;
	h.file_len = strlen(body);
	set(&h, "args",
	    "'x y' \""
	    "$(touch \\\"$HOME/pwned\\\")"
	    "\"");
	run(&h, mod("script"));
	if (h.state != OM_PLUGIN_OK)
		fail_msg("script failed: %s; output: %s", h.reason, (char *)h.output.data);
	assert_string_equal((char *)h.output.data, "script-ran [x y] [$(touch \"$HOME/pwned\")]\n");
	assert_int_equal(h.nuploads, 1);
	assert_int_equal(strncmp(h.upload_path[0], "/tmp/.omserver-script-", 22), 0);
	assert_false(exists("/", h.upload_path[0])); /* removed after the run */
	assert_true(h.cmd_flags[0] & OM_EXEC_NO_BECOME);
	assert_no_escape();
	ctx_free(&h);

	/* check mode: no upload, no exec */
	h.check = 1;
	h.file_param = "script";
	h.file_data = (const uint8_t *)body;
	h.file_len = strlen(body);
	run(&h, mod("script"));
	assert_int_equal(h.nuploads + h.ncmds, 0);
	assert_int_equal(h.state, OM_PLUGIN_OK);
	ctx_free(&h);

	run(&h, mod("script"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "parameter 'script' is required");
	ctx_free(&h);
}

/* Files in dir whose name has ".omtmp." (staged copies left behind). */
static int
count_omtmp(const char *dir)
{
	char cmd[PATH_MAX * 2];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "find %s -name '*.omtmp.*' | wc -l", quoted(dir));
	if ((f = popen(cmd, "r")) != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static void
test_copy(void **state)
{
	struct om_host_ctx h = {0};
	char dest[PATH_MAX * 2], sha[65], want[PATH_MAX * 4];
	struct stat st;
	uint8_t *data;
	size_t len;

	(void)state;
	snprintf(dest, sizeof(dest), "%s/%s.conf", home, EVIL_NAME);
	omp_sha256_hex("hello\n", 6, sha);

	/* first copy: written, mode set, result names everything */
	h.local = 1;
	h.home = home;
	set(&h, "content", "hello\n");
	set(&h, "dest", dest);
	set(&h, "mode", "0640");
	run(&h, mod("copy"));
	if (h.state != OM_PLUGIN_OK)
		fail_msg("copy failed: %s; output: %s", h.reason, (char *)h.output.data);
	assert_int_equal(h.changed, 1);
	/*
	 * stat, then mktemp as the login user (SFTP writes as that user), the
	 * upload to that private temp file, then one install command that
	 * gets become: verify, cp next to dest, chmod, mv, remove the temp.
	 */
	assert_int_equal(h.ncmds, 3);
	assert_false(h.cmd_flags[0] & OM_EXEC_NO_BECOME);
	assert_string_equal(h.cmds[1], "mktemp /tmp/.omserver-copy-XXXXXXXXXX");
	assert_true(h.cmd_flags[1] & OM_EXEC_NO_BECOME);
	assert_false(h.cmd_flags[2] & OM_EXEC_NO_BECOME);
	assert_int_equal(h.nuploads, 1);
	assert_int_equal(strncmp(h.upload_path[0], "/tmp/.omserver-copy-", 20), 0);
	assert_int_equal(h.ops[2].mode, 0600);
	assert_non_null(strstr(h.cmds[2], quoted(h.upload_path[0])));
	assert_non_null(strstr(h.cmds[2], "cp -- \"$t\" \"$n\"\nchmod 0640 \"$n\"\nmv -f -- "));
	assert_int_equal(stat(dest, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_non_null(data = slurp(dest, &len));
	assert_memory_equal(data, "hello\n", 6);
	om_free(data);
	assert_false(exists("/", h.upload_path[0])); /* the trap removed the temp file */
	assert_int_equal(count_omtmp(home), 0);      /* and the staged copy was renamed */
	{
		struct om_buf b;

		om_buf_init(&b, 1 << 16);
		om_buf_printf(&b, "{\"dest\":\"");
		/* dest as JSON: the newline is escaped */
		for (const char *p = dest; *p; p++)
			if (*p == '\n')
				om_buf_append(&b, "\\n", 2);
			else if (*p == '"' || *p == '\\')
				om_buf_printf(&b, "\\%c", *p);
			else
				om_buf_putc(&b, (uint8_t)*p);
		om_buf_printf(&b, "\",\"sha256\":\"%s\",\"size\":6,\"changed\":true}", sha);
		om_buf_putc(&b, '\0');
		snprintf(want, sizeof(want), "%s", (char *)b.data);
		om_buf_release(&b);
	}
	assert_string_equal(h.result, want);
	assert_no_escape();
	ctx_free(&h);

	/* the same again: unchanged, nothing uploaded */
	h.local = 1;
	h.home = home;
	set(&h, "content", "hello\n");
	set(&h, "dest", dest);
	set(&h, "mode", "0640");
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 0);
	assert_int_equal(h.nuploads, 0);
	assert_int_equal(h.ncmds, 1);
	assert_non_null(strstr(h.result, "\"changed\":false"));
	ctx_free(&h);

	/* only the mode differs: chmod, no upload */
	h.local = 1;
	h.home = home;
	set(&h, "content", "hello\n");
	set(&h, "dest", dest);
	set(&h, "mode", "0600");
	run(&h, mod("copy"));
	assert_int_equal(h.changed, 1);
	assert_int_equal(h.nuploads, 0);
	assert_int_equal(stat(dest, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	ctx_free(&h);

	/* check mode with new content: reports the change, writes nothing */
	h.local = 1;
	h.home = home;
	h.check = 1;
	h.file_param = "src";
	h.file_data = (const uint8_t *)"other";
	h.file_len = 5;
	set(&h, "dest", dest);
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 1);
	assert_int_equal(h.nuploads, 0);
	assert_int_equal(h.ncmds, 1);
	assert_non_null(data = slurp(dest, &len));
	assert_memory_equal(data, "hello\n", 6);
	om_free(data);
	ctx_free(&h);

	/* invalid parameters name the parameter */
	set(&h, "content", "x");
	set(&h, "dest", "/tmp/x");
	set(&h, "mode", "9z");
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "parameter 'mode': '9z' is not an octal mode");
	ctx_free(&h);
	set(&h, "content", "x");
	set(&h, "dest", "relative");
	run(&h, mod("copy"));
	assert_string_equal(h.reason, "parameter 'dest' must be an absolute path");
	ctx_free(&h);
	set(&h, "dest", "/tmp/x");
	run(&h, mod("copy"));
	assert_non_null(strstr(h.reason, "parameter 'content'"));
	assert_int_equal(h.ncmds + h.nuploads, 0);
	ctx_free(&h);

	/* scripted: owner and group reach the shell quoted */
	set(&h, "content", "x");
	set(&h, "dest", "/etc/x");
	set(&h, "owner", EVIL);
	set(&h, "group", "wheel");
	reply(&h, 0, "absent\n");
	reply(&h, 0, "/tmp/.omserver-copy-aB3dE6gH9j\n");
	reply(&h, 0, NULL);
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal(h.upload_path[0], "/tmp/.omserver-copy-aB3dE6gH9j");
	snprintf(want, sizeof(want), "chown -- %s \"$n\"\nchgrp -- 'wheel' \"$n\"\n", quoted(EVIL));
	assert_non_null(strstr(h.cmds[2], want));
	assert_non_null(strstr(h.cmds[2], "mv -f -- \"$n\" '/etc/x'\n"));
	ctx_free(&h);

	/* scripted: a name mktemp cannot have made is not trusted */
	set(&h, "content", "x");
	set(&h, "dest", "/etc/x");
	reply(&h, 0, "absent\n");
	reply(&h, 0, "/etc/passwd\n");
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "mktemp printed an unexpected name");
	assert_int_equal(h.nuploads, 0);
	ctx_free(&h);

	/* a failed upload removes the temp file (as the login user) and says why */
	h.local = 1;
	h.home = home;
	h.upload_rc = OM_PLUGIN_EIO;
	set(&h, "content", "new\n");
	set(&h, "dest", dest);
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_non_null(strstr(h.reason, "failed: input/output error"));
	assert_int_equal(h.ncmds, 3);
	assert_true(h.cmd_flags[2] & OM_EXEC_NO_BECOME);
	assert_false(exists("/", h.upload_path[0]));
	assert_non_null(data = slurp(dest, &len));
	assert_memory_equal(data, "hello\n", 6);
	om_free(data);
	ctx_free(&h);

	/* a corrupted upload fails the checksum: dest untouched, nothing left behind */
	h.local = 1;
	h.home = home;
	h.upload_corrupt = 1;
	set(&h, "content", "new\n");
	set(&h, "dest", dest);
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_int_equal(h.exit_code, 3);
	assert_non_null(strstr(h.reason, "checksum mismatch after upload"));
	assert_false(exists("/", h.upload_path[0]));
	assert_int_equal(count_omtmp(home), 0);
	assert_non_null(data = slurp(dest, &len));
	assert_memory_equal(data, "hello\n", 6);
	om_free(data);
	ctx_free(&h);

	/* the install fails (no such directory): the reason is cp's, the temp file is gone */
	h.local = 1;
	h.home = home;
	snprintf(want, sizeof(want), "%s/no-such-dir/x", home);
	set(&h, "content", "new\n");
	set(&h, "dest", want);
	run(&h, mod("copy"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_non_null(strstr(h.reason, "failed (exit status 1): cp: "));
	assert_non_null(strstr(h.reason, "No such file or directory"));
	assert_false(exists("/", h.upload_path[0]));
	ctx_free(&h);
	assert_no_escape();
}

static void
test_fetch(void **state)
{
	struct om_host_ctx h = {0};
	char path[PATH_MAX * 2], sha[65], want[PATH_MAX * 3];

	(void)state;
	snprintf(path, sizeof(path), "%s/fetch-me.txt", home);
	assert_int_equal(om_write_file(path, "0123456789", 10, 0644), 0);
	omp_sha256_hex("0123456789", 10, sha);
	h.local = 1;
	h.home = home;
	set(&h, "src", path);
	run(&h, mod("fetch"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal(h.saved_name, "fetch-me.txt");
	assert_int_equal(h.saved_len, 10);
	snprintf(want, sizeof(want),
	         "{\"src\":\"%s\",\"size\":10,\"sha256\":\"%s\",\"dest_name\":\"fetch-me.txt\"}",
	         path, sha);
	assert_string_equal(h.result, want);
	assert_int_equal(h.changed, 0);
	ctx_free(&h);

	h.local = 1;
	h.home = home;
	set(&h, "src", path);
	set(&h, "max_size", "5");
	run(&h, mod("fetch"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_non_null(strstr(h.reason, "larger than max_size (5 bytes)"));
	assert_null(h.saved_name);
	ctx_free(&h);

	set(&h, "src", path);
	set(&h, "max_size", "lots");
	run(&h, mod("fetch"));
	assert_string_equal(h.reason, "parameter 'max_size': 'lots' is not a positive size");
	ctx_free(&h);
}

static void
test_ping(void **state)
{
	struct om_host_ctx h = {0};

	(void)state;
	reply(&h, 0, "pong\n");
	run(&h, mod("ping"));
	assert_string_equal(h.cmds[0], "echo pong");
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_string_equal(h.result, "{\"ping\":\"pong\"}");
	ctx_free(&h);

	h.replies[h.nreplies++] = (struct reply){OM_PLUGIN_ETIMEDOUT, 0, NULL, NULL};
	run(&h, mod("ping"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "ping did not run: timed out");
	ctx_free(&h);
}

static void
test_facts(void **state)
{
	struct om_host_ctx h = {0};
	json_t *o;

	(void)state;
	reply(&h, 0,
	      "hostname=web1\nkernel=6.1.0-18-amd64\narch=x86_64\n"
	      "os_PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nos_NAME=\"Debian GNU/Linux\"\n"
	      "os_VERSION_ID=\"12\"\nos_ID=debian\ncpus=4\nmemory_kb=8029544\nuptime_s=86400\n"
	      "disk=30830568 4406324 /\ndisk=523248 5972 /boot/my efi\ndisk=garbage\n"
	      "addr=10.0.0.5/24\naddr=fe80::1/64\nnoise without equals\n");
	run(&h, mod("facts"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 0);
	assert_string_equal(
	        h.result,
	        "{\"hostname\":\"web1\",\"os\":{\"id\":\"debian\",\"name\":\"Debian GNU/Linux\","
	        "\"version\":\"12\",\"pretty_name\":\"Debian GNU/Linux 12 (bookworm)\"},"
	        "\"kernel\":\"6.1.0-18-amd64\",\"arch\":\"x86_64\",\"cpus\":4,\"memory_kb\":"
	        "8029544,"
	        "\"uptime_s\":86400,\"addresses\":[\"10.0.0.5/24\",\"fe80::1/64\"],"
	        "\"disks\":[{\"mount\":\"/\",\"size_kb\":30830568,\"used_kb\":4406324},"
	        "{\"mount\":\"/boot/my efi\",\"size_kb\":523248,\"used_kb\":5972}]}");
	ctx_free(&h);

	/* missing facts are null, not invented */
	reply(&h, 0, "hostname=x\ncpus=many\n");
	run(&h, mod("facts"));
	assert_string_equal(
	        h.result, "{\"hostname\":\"x\",\"os\":{\"id\":null,\"name\":null,\"version\":null,"
	                  "\"pretty_name\":null},\"kernel\":null,\"arch\":null,\"cpus\":null,"
	                  "\"memory_kb\":null,\"uptime_s\":null,\"addresses\":[],\"disks\":[]}");
	ctx_free(&h);

	/* the real script on this machine */
	h.local = 1;
	h.home = home;
	run(&h, mod("facts"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_non_null(o = json_loads(h.result, 0, NULL));
	assert_true(json_is_string(json_object_get(o, "kernel")));
	assert_true(json_is_integer(json_object_get(o, "cpus")));
	assert_true(json_is_array(json_object_get(o, "disks")));
	json_decref(o);
	ctx_free(&h);
}

static void
test_service(void **state)
{
	struct om_host_ctx h = {0};
	char want[8192];

	(void)state;
	set(&h, "name", "nginx");
	set(&h, "state", "started");
	reply(&h, 3, "inactive\n");
	reply(&h, 0, NULL);
	run(&h, mod("service"));
	assert_string_equal(h.cmds[0], "systemctl is-active -- 'nginx'");
	assert_string_equal(h.cmds[1], "systemctl start -- 'nginx'");
	assert_int_equal(h.changed, 1);
	assert_string_equal(h.result, "{\"name\":\"nginx\",\"state\":\"started\",\"active\":true}");
	ctx_free(&h);

	/* already running: no change, one command */
	set(&h, "name", "nginx");
	set(&h, "state", "started");
	reply(&h, 0, "active\n");
	run(&h, mod("service"));
	assert_int_equal(h.ncmds, 1);
	assert_int_equal(h.changed, 0);
	ctx_free(&h);

	/* check mode: would stop, does not */
	h.check = 1;
	set(&h, "name", EVIL);
	set(&h, "state", "stopped");
	reply(&h, 0, "active\n");
	run(&h, mod("service"));
	assert_int_equal(h.ncmds, 1);
	assert_int_equal(h.changed, 1);
	snprintf(want, sizeof(want), "systemctl is-active -- %s", quoted(EVIL));
	assert_string_equal(h.cmds[0], want);
	ctx_free(&h);

	set(&h, "name", "nginx");
	set(&h, "state", "exploded");
	run(&h, mod("service"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_non_null(strstr(h.reason, "parameter 'state'"));
	ctx_free(&h);
}

static void
test_package(void **state)
{
	struct om_host_ctx h = {0};

	(void)state;
	set(&h, "name", "curl vim");
	reply(&h, 0, "manager=apt\ninstalled=curl\n");
	reply(&h, 0, NULL);
	run(&h, mod("package"));
	assert_non_null(strstr(h.cmds[0], "for p in 'curl' 'vim'; do"));
	assert_string_equal(h.cmds[1],
	                    "DEBIAN_FRONTEND=noninteractive apt-get -y -q install 'vim'");
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 1);
	assert_string_equal(h.result, "{\"name\":\"curl vim\",\"state\":\"present\",\"manager\":"
	                              "\"apt\",\"changed\":true,\"packages\":[\"vim\"]}");
	ctx_free(&h);

	/* check mode: the manager's dry run */
	h.check = 1;
	set(&h, "name", "curl");
	set(&h, "state", "absent");
	reply(&h, 0, "manager=dnf\ninstalled=curl\n");
	reply(&h, 1, NULL);
	run(&h, mod("package"));
	assert_string_equal(h.cmds[1], "dnf --assumeno remove 'curl'");
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 1);
	ctx_free(&h);

	/* nothing to do */
	set(&h, "name", "curl");
	reply(&h, 0, "manager=apt\ninstalled=curl\n");
	run(&h, mod("package"));
	assert_int_equal(h.ncmds, 1);
	assert_int_equal(h.changed, 0);
	ctx_free(&h);

	/* a name that is not a package name never reaches the host */
	set(&h, "name", "vim;rm\\ -rf");
	run(&h, mod("package"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "parameter 'name': 'vim;rm -rf' is not a package name");
	assert_int_equal(h.ncmds, 0);
	ctx_free(&h);
	set(&h, "name", "-oAPT::x");
	run(&h, mod("package"));
	assert_non_null(strstr(h.reason, "is not a package name"));
	ctx_free(&h);

	reply(&h, 0, "");
	set(&h, "name", "curl");
	run(&h, mod("package"));
	assert_string_equal(h.reason, "no supported package manager (apt-get, dnf) on the host");
	ctx_free(&h);
}

/* The script module echo-args, really run through sh with $HOME a temp dir. */
static void
test_script_module(void **state)
{
	const struct om_module *m = mod("echo-args");
	struct om_host_ctx h = {0};
	json_t *o, *args;

	(void)state;
	h.local = 1;
	h.home = home;
	set(&h, "msg", EVIL);
	set(&h, "count", "42");
	set(&h, "flag", "yes");
	run(&h, m);
	if (h.state != OM_PLUGIN_OK)
		fail_msg("echo-args failed: %s", h.reason);
	assert_int_equal(h.nuploads, 1); /* first run: uploaded */
	assert_true(h.cmd_flags[0] & OM_EXEC_NO_BECOME);
	assert_false(h.cmd_flags[2] & OM_EXEC_NO_BECOME); /* the module itself may become */
	assert_non_null(o = json_loads(h.result, 0, NULL));
	args = json_object_get(o, "args");
	assert_string_equal(json_string_value(json_object_get(args, "msg")), EVIL);
	assert_int_equal(json_integer_value(json_object_get(args, "count")), 42);
	assert_true(json_is_true(json_object_get(args, "flag")));
	assert_null(json_object_get(args, "color"));
	assert_false(json_is_true(json_object_get(o, "changed")));
	json_decref(o);
	assert_no_escape();
	ctx_free(&h);

	/* second run: the cached copy is used, the default fills msg */
	h.local = 1;
	h.home = home;
	run(&h, m);
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.nuploads, 0);
	assert_non_null(strstr(h.result, "\"msg\":\"hello\""));
	ctx_free(&h);
}

/* Script modules that answer badly, from a temp modules dir. */
static void
test_script_module_bad(void **state)
{
	char dir[] = "/tmp/om-mt-mods-XXXXXX", path[PATH_MAX];
	struct om_plugins *p;
	struct om_host_ctx h = {0};
	static const char *const mods[][2] = {
	        {"notjson", "#!/bin/sh\necho this is not json\n"},
	        {"fails",
	         "#!/bin/sh\necho '{\"changed\":false,\"failed\":true,\"msg\":\"it broke\"}'\n"},
	        {"changes", "#!/bin/sh\necho '{\"changed\":true,\"extra\":[1,2]}'\n"},
	        {"exits", "#!/bin/sh\necho '{\"changed\":false}'; exit 4\n"},
	};

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < 4; i++) {
		char man[256];

		snprintf(path, sizeof(path), "%s/%s.sh", dir, mods[i][0]);
		assert_int_equal(om_write_file(path, mods[i][1], strlen(mods[i][1]), 0755), 0);
		snprintf(man, sizeof(man),
		         "{\"name\":\"%s\",\"version\":\"1\",\"executable\":\"%s.sh\"}", mods[i][0],
		         mods[i][0]);
		snprintf(path, sizeof(path), "%s/%s.json", dir, mods[i][0]);
		assert_int_equal(om_write_file(path, man, strlen(man), 0644), 0);
	}
	assert_int_equal(om_plugins_load(NULL, dir, &fake_api, &p), 0);
	assert_int_equal(om_plugins_count(p), 4);

	h.local = 1;
	h.home = home;
	run(&h, om_plugins_find(p, "notjson"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_non_null(strstr(h.reason, "module 'notjson' returned invalid JSON: "));
	ctx_free(&h);

	h.local = 1;
	h.home = home;
	run(&h, om_plugins_find(p, "fails"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_string_equal(h.reason, "it broke");
	assert_non_null(h.result);
	ctx_free(&h);

	h.local = 1;
	h.home = home;
	run(&h, om_plugins_find(p, "changes"));
	assert_int_equal(h.state, OM_PLUGIN_OK);
	assert_int_equal(h.changed, 1);
	assert_string_equal(h.result, "{\"changed\":true,\"extra\":[1,2]}");
	ctx_free(&h);

	h.local = 1;
	h.home = home;
	run(&h, om_plugins_find(p, "exits"));
	assert_int_equal(h.state, OM_PLUGIN_FAILED);
	assert_int_equal(h.exit_code, 4);
	assert_string_equal(h.reason, "module 'exits' exited with status 4");
	ctx_free(&h);

	om_plugins_free(p);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sha256_vectors),
	        cmocka_unit_test(test_split),
	        cmocka_unit_test(test_shell),
	        cmocka_unit_test(test_command),
	        cmocka_unit_test(test_script),
	        cmocka_unit_test(test_copy),
	        cmocka_unit_test(test_fetch),
	        cmocka_unit_test(test_ping),
	        cmocka_unit_test(test_facts),
	        cmocka_unit_test(test_service),
	        cmocka_unit_test(test_package),
	        cmocka_unit_test(test_script_module),
	        cmocka_unit_test(test_script_module_bad),
	};
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return 2;
	exe[n] = '\0';
	snprintf(build_dir, sizeof(build_dir), "%s", dirname(dirname(dirname(exe))));
	snprintf(top_dir, sizeof(top_dir), "%s", build_dir);
	*strrchr(top_dir, '/') = '\0';
	om_log_setup("modules_test", OM_LOG_WARN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
