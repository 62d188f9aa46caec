/*
 * worker/ssh.c against a real sshd on 127.0.0.1:22500 (tests/fixture/test-sshd.sh).
 * Needs root and /usr/sbin/sshd; without them the sshd cases are skipped.
 * Run from the repository root (the fixture path is relative).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>

#include "om/base.h"
#include "om/msg.h"
#include "ssh.h"

#define FIXTURE   "tests/fixture/test-sshd.sh"
#define SSHD_PORT 22500
#define KEEP      4096 /* bytes of each stream kept per host; the rest only counted */

static char dir[64];
static bool sshd_up;
static char skip_why[256];

struct result {
	int done_count;
	int state;
	int exit_code;
	bool has_reason;
	char reason[512];
	uint64_t duration_ms;
	uint8_t out[KEEP], err[KEEP];
	size_t out_len, err_len; /* total bytes received */
	int64_t first_out_ms;    /* 0: no output yet */
	int64_t done_ms;
};

struct ctx {
	struct result *res;
	size_t n;
	volatile int cancel;
	bool cancel_on_output;
	size_t started, done; /* hosts with output; done callbacks */
	size_t max_inflight;  /* max of started - done, a lower bound of the real in-flight */
	bool bad_index;
};

static void
on_output(void *arg, size_t host, int stream, const uint8_t *data, size_t n)
{
	struct ctx *c = arg;
	struct result *r;
	uint8_t *keep;
	size_t *len;

	if (host >= c->n || (stream != 1 && stream != 2)) {
		c->bad_index = true;
		return;
	}
	r = &c->res[host];
	if (r->first_out_ms == 0) {
		r->first_out_ms = om_now_ms();
		c->started++;
		if (c->started - c->done > c->max_inflight)
			c->max_inflight = c->started - c->done;
	}
	keep = stream == 1 ? r->out : r->err;
	len = stream == 1 ? &r->out_len : &r->err_len;
	if (*len < KEEP)
		memcpy(keep + *len, data, n < KEEP - *len ? n : KEEP - *len);
	*len += n;
	if (c->cancel_on_output)
		c->cancel = 1;
}

static void
on_done(void *arg, size_t host, int state, int exit_code, const char *reason, uint64_t duration_ms)
{
	struct ctx *c = arg;
	struct result *r;

	if (host >= c->n) {
		c->bad_index = true;
		return;
	}
	r = &c->res[host];
	c->done++;
	r->done_count++;
	r->state = state;
	r->exit_code = exit_code;
	r->has_reason = reason != NULL;
	snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
	r->duration_ms = duration_ms;
	r->done_ms = om_now_ms();
}

static void
path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static struct ctx *
ctx_new(size_t n)
{
	struct ctx *c = calloc(1, sizeof *c);

	assert_non_null(c);
	c->res = calloc(n, sizeof *c->res);
	assert_non_null(c->res);
	c->n = n;
	return c;
}

static void
ctx_free(struct ctx *c)
{
	free(c->res);
	free(c);
}

/* Runs cmd on n targets; known_hosts is a file name inside dir.  Returns the wall time in ms. */
static int64_t
run(struct ctx *c, const struct om_ssh_target *t, size_t n, const char *cmd, const char *kh,
    unsigned concurrency, unsigned timeout_s, unsigned connect_timeout_s)
{
	char key[128], khp[128];
	struct om_ssh_opts o = {.privkey = key,
	                        .known_hosts = khp,
	                        .concurrency = concurrency,
	                        .timeout_s = timeout_s,
	                        .connect_timeout_s = connect_timeout_s};
	struct om_ssh_cb cb = {.output = on_output, .done = on_done, .arg = c};
	int64_t t0 = om_now_ms();
	size_t i;

	path_in_dir(key, sizeof key, "id_ed25519");
	path_in_dir(khp, sizeof khp, kh);
	assert_int_equal(om_ssh_run(&o, t, n, cmd, &c->cancel, &cb), 0);
	assert_false(c->bad_index);
	for (i = 0; i < n; i++)
		assert_int_equal(c->res[i].done_count, 1);
	return om_now_ms() - t0;
}

static struct om_ssh_target
local(void)
{
	struct om_ssh_target t = {
	        .name = "local", .addr = "127.0.0.1", .user = "root", .port = SSHD_PORT};
	return t;
}

#define NEED_SSHD()                                                                                \
	do {                                                                                       \
		if (!sshd_up) {                                                                    \
			print_message("skipped: %s\n", skip_why);                                  \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void
test_streams(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "printf out1; printf err1 >&2; printf out2; printf err2 >&2", "known_hosts",
	    1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	assert_int_equal(c->res[0].exit_code, 0);
	assert_false(c->res[0].has_reason);
	assert_int_equal(c->res[0].out_len, 8);
	assert_memory_equal(c->res[0].out, "out1out2", 8);
	assert_int_equal(c->res[0].err_len, 8);
	assert_memory_equal(c->res[0].err, "err1err2", 8);
	ctx_free(c);
}

/* Output must reach the callback while the command still runs, not at its end. */
static void
test_streaming_is_live(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "echo first; sleep 1; echo second", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	assert_int_equal(c->res[0].out_len, 13);
	assert_memory_equal(c->res[0].out, "first\nsecond\n", 13);
	assert_true(c->res[0].done_ms - c->res[0].first_out_ms >= 700);
	ctx_free(c);
}

/* More than the 2 MiB channel window on each stream: stderr must be drained too. */
static void
test_large_both_streams(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;
	uint8_t zero[KEEP] = {0};

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "head -c 3000000 /dev/zero >&2; head -c 5000000 /dev/zero", "known_hosts", 1,
	    30, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	assert_int_equal(c->res[0].err_len, 3000000);
	assert_int_equal(c->res[0].out_len, 5000000);
	assert_memory_equal(c->res[0].out, zero, KEEP);
	ctx_free(c);
}

static void
test_binary_output(void **state)
{
	static const uint8_t want[] = {0x00, 0xff, 'a', 'b', 'c'};
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "printf '\\000\\377abc'", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	assert_int_equal(c->res[0].out_len, sizeof want);
	assert_memory_equal(c->res[0].out, want, sizeof want);
	assert_int_equal(c->res[0].err_len, 0);
	ctx_free(c);
}

static void
test_exit_status(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "exit 3", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_FAILED);
	assert_int_equal(c->res[0].exit_code, 3);
	assert_string_equal(c->res[0].reason, "exit status 3");
	ctx_free(c);
}

static void
test_exit_signal(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "kill -TERM $$", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_FAILED);
	assert_int_equal(c->res[0].exit_code, -1);
	assert_string_equal(c->res[0].reason, "killed by signal TERM");
	ctx_free(c);
}

/*
 * Each login here can cost the sshd side far more than the engine (root's
 * dotfiles run on every exec), so the cap below is generous; the overlap,
 * the sum of the hosts' durations over the wall time, shows that the hosts
 * ran side by side.
 */
static void
test_sixty_hosts_concurrently(void **state)
{
	enum { N = 60 };
	struct om_ssh_target t[N];
	struct ctx *c;
	uint64_t sum = 0;
	int64_t wall;
	size_t i;

	(void)state;
	NEED_SSHD();
	c = ctx_new(N);
	for (i = 0; i < N; i++)
		t[i] = local();
	wall = run(c, t, N, "echo start; sleep 1", "known_hosts", N, 60, 0);
	for (i = 0; i < N; i++) {
		assert_int_equal(c->res[i].state, OM_HS_OK);
		assert_int_equal(c->res[i].out_len, 6);
		sum += c->res[i].duration_ms;
	}
	print_message("60 hosts, concurrency 60, 'echo start; sleep 1': %lld ms wall, "
	              "overlap %.1f (sum of host durations / wall), at most %zu commands seen "
	              "running at once\n",
	              (long long)wall, (double)sum / (double)wall, c->max_inflight);
	assert_true(wall < 20000);
	assert_true(sum >= 10 * (uint64_t)wall);
	ctx_free(c);
}

/* More hosts than slots: the cap holds and each host starts as another ends. */
static void
test_concurrency_cap(void **state)
{
	enum { N = 4 };
	struct om_ssh_target t[N];
	struct ctx *c;
	int64_t wall;
	size_t i;

	(void)state;
	NEED_SSHD();
	c = ctx_new(N);
	for (i = 0; i < N; i++)
		t[i] = local();
	wall = run(c, t, N, "echo start; sleep 1", "known_hosts", 2, 30, 0);
	for (i = 0; i < N; i++)
		assert_int_equal(c->res[i].state, OM_HS_OK);
	print_message("4 hosts, concurrency 2, 'sleep 1': %lld ms wall\n", (long long)wall);
	assert_true(c->max_inflight <= 2);
	assert_true(wall >= 1900);
	assert_true(wall < 15000);
	ctx_free(c);
}

static size_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The part of the sshd log after offset, NUL-terminated; caller frees. */
static char *
log_since(size_t off)
{
	char path[128];
	FILE *f;
	char *s;
	size_t n;

	path_in_dir(path, sizeof path, "sshd.log");
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, (long)off, SEEK_SET);
	s = calloc(1, 1 << 20);
	assert_non_null(s);
	n = fread(s, 1, (1 << 20) - 1, f);
	s[n] = '\0';
	fclose(f);
	return s;
}

static void
test_wrong_host_key(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;
	char logp[128], *log = NULL;
	size_t off;
	int i;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	path_in_dir(logp, sizeof logp, "sshd.log");
	usleep(300000); /* let sshd finish logging the earlier cases' disconnects */
	off = file_size(logp);
	run(c, &t, 1, "echo should-not-run", "known_hosts_wrong", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_FAILED);
	assert_int_equal(c->res[0].exit_code, -1);
	assert_string_equal(
	        c->res[0].reason,
	        "host key verification failed: the key of 127.0.0.1:22500 does not match "
	        "known_hosts (possible man-in-the-middle)");
	assert_int_equal(c->res[0].out_len, 0);
	/* Wait until sshd logged the end of that connection, then look for any auth attempt. */
	for (i = 0; i < 50; i++) {
		free(log);
		log = log_since(off);
		if (strstr(log, "Connection closed by") || strstr(log, "Connection reset by"))
			break;
		usleep(100000);
	}
	assert_non_null(strstr(log, "Connection closed by") ? log : strstr(log, "reset by"));
	if (strstr(log, "Accepted") || strstr(log, "userauth-request") || strstr(log, "publickey"))
		print_message("sshd log after the run:\n%s\n", log);
	assert_null(strstr(log, "Accepted"));
	assert_null(strstr(log, "userauth-request"));
	assert_null(strstr(log, "publickey"));
	free(log);
	ctx_free(c);
}

/* An entry for port 22 must not vouch for another port (libssh2's checkp would accept it). */
static void
test_host_not_in_known_hosts(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	run(c, &t, 1, "true", "known_hosts_noport", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_FAILED);
	assert_string_equal(c->res[0].reason,
	                    "host key verification failed: 127.0.0.1:22500 is not in known_hosts");
	ctx_free(c);
}

/* known_hosts may list the inventory name instead of the address. */
static void
test_known_hosts_by_name(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;
	char src[128], dst[128], line[512];
	FILE *in, *out;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	path_in_dir(src, sizeof src, "known_hosts");
	path_in_dir(dst, sizeof dst, "known_hosts_name");
	in = fopen(src, "r");
	out = fopen(dst, "w");
	assert_non_null(in);
	assert_non_null(out);
	assert_non_null(fgets(line, sizeof line, in));
	assert_non_null(strchr(line, ' '));
	fprintf(out, "[web-7.example]:%d%s", SSHD_PORT, strchr(line, ' '));
	fclose(in);
	fclose(out);
	t.name = "web-7.example";
	run(c, &t, 1, "echo ok", "known_hosts_name", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	ctx_free(c);
}

static void
test_auth_failure(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	t.user = "om_no_such_user";
	run(c, &t, 1, "true", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_FAILED);
	assert_int_equal(c->res[0].exit_code, -1);
	assert_string_equal(c->res[0].reason,
	                    "authentication failed for user 'om_no_such_user' (publickey)");
	ctx_free(c);
}

static void
test_closed_port(void **state)
{
	struct om_ssh_target t = {.name = "closed", .addr = "127.0.0.1", .user = "root", .port = 1};
	struct ctx *c;

	(void)state;
	NEED_SSHD(); /* only for the key files */
	c = ctx_new(1);
	run(c, &t, 1, "true", "known_hosts", 1, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_UNREACHABLE);
	assert_int_equal(c->res[0].exit_code, -1);
	assert_string_equal(c->res[0].reason, "connect to 127.0.0.1:1: Connection refused");
	ctx_free(c);
}

/* A listener that never says a word: the connect timeout ends the handshake. */
static void
test_silent_server(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	struct om_ssh_target t = {.name = "mute", .addr = "127.0.0.1", .user = "root"};
	struct ctx *c;
	int64_t wall;
	int fd;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	t.port = ntohs(a.sin_port);
	wall = run(c, &t, 1, "true", "known_hosts", 1, 0, 1);
	close(fd);
	assert_int_equal(c->res[0].state, OM_HS_UNREACHABLE);
	assert_non_null(strstr(c->res[0].reason, "ssh handshake failed"));
	assert_true(wall >= 900 && wall < 3000);
	ctx_free(c);
}

static void
test_timeout(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c;
	int64_t wall;

	(void)state;
	NEED_SSHD();
	c = ctx_new(1);
	wall = run(c, &t, 1, "sleep 30", "known_hosts", 1, 2, 0);
	print_message("'sleep 30' with timeout_s 2: done after %lld ms\n", (long long)wall);
	assert_int_equal(c->res[0].state, OM_HS_TIMEOUT);
	assert_int_equal(c->res[0].exit_code, -1);
	assert_string_equal(c->res[0].reason, "timed out after 2 s");
	assert_true(c->res[0].duration_ms >= 2000 && c->res[0].duration_ms < 3000);
	assert_true(wall < 5000);
	ctx_free(c);
}

/* The flag set from the output callback stops the running host and the queued ones. */
static void
test_cancel(void **state)
{
	enum { N = 3 };
	struct om_ssh_target t[N] = {local(), local(), local()};
	struct ctx *c;
	int64_t wall;
	size_t i;

	(void)state;
	NEED_SSHD();
	c = ctx_new(N);
	c->cancel_on_output = true;
	wall = run(c, t, N, "echo tick; sleep 30", "known_hosts", 1, 60, 0);
	print_message("cancel from the output callback: done after %lld ms\n", (long long)wall);
	for (i = 0; i < N; i++) {
		assert_int_equal(c->res[i].state, OM_HS_CANCELLED);
		assert_int_equal(c->res[i].exit_code, -1);
	}
	assert_int_equal(c->res[0].out_len, 5);
	assert_int_equal(c->res[1].out_len, 0);
	assert_true(wall < 5000);
	ctx_free(c);
}

/* Different outcomes in one run; each host gets its own, exactly once. */
static void
test_mixed(void **state)
{
	enum { N = 5 };
	struct om_ssh_target t[N] = {local(), local(), local(), local(), local()};
	struct ctx *c;

	(void)state;
	NEED_SSHD();
	c = ctx_new(N);
	t[1].port = 1;
	t[3].user = "om_no_such_user";
	t[4].addr = "";
	run(c, t, N, "echo hi", "known_hosts", 2, 20, 0);
	assert_int_equal(c->res[0].state, OM_HS_OK);
	assert_int_equal(c->res[1].state, OM_HS_UNREACHABLE);
	assert_int_equal(c->res[2].state, OM_HS_OK);
	assert_int_equal(c->res[3].state, OM_HS_FAILED);
	assert_int_equal(c->res[4].state, OM_HS_FAILED);
	assert_int_equal(c->res[0].out_len, 3);
	assert_int_equal(c->res[2].out_len, 3);
	ctx_free(c);
}

static void
test_setup_errors(void **state)
{
	struct om_ssh_target t = local();
	struct ctx *c = ctx_new(1);
	struct om_ssh_opts o = {.privkey = "/nonexistent/om/id_ed25519",
	                        .known_hosts = "/nonexistent/om/known_hosts",
	                        .concurrency = 1};
	struct om_ssh_cb cb = {.output = on_output, .done = on_done, .arg = c};
	char key[128];

	(void)state;
	assert_int_equal(om_ssh_run(&o, &t, 1, "true", NULL, &cb), OM_ENOTFOUND);
	o.concurrency = 0;
	assert_int_equal(om_ssh_run(&o, &t, 1, "true", NULL, &cb), OM_EINVAL);
	if (sshd_up) {
		path_in_dir(key, sizeof key, "id_ed25519");
		o.privkey = key;
		o.concurrency = 1;
		assert_int_equal(om_ssh_run(&o, &t, 1, "true", NULL, &cb), OM_ENOTFOUND);
	}
	assert_int_equal(c->done, 0);
	ctx_free(c);
}

static int
group_setup(void **state)
{
	char cmd[256];
	int rc;

	(void)state;
	if (geteuid() != 0) {
		snprintf(skip_why, sizeof skip_why, "the test sshd needs root");
		return 0;
	}
	if (access("/usr/sbin/sshd", X_OK) != 0) {
		snprintf(skip_why, sizeof skip_why, "/usr/sbin/sshd is not installed");
		return 0;
	}
	if (access(FIXTURE, X_OK) != 0) {
		snprintf(skip_why, sizeof skip_why, "%s not found; run from the repository root",
		         FIXTURE);
		return 0;
	}
	snprintf(dir, sizeof dir, "/tmp/om-ssh-test-XXXXXX");
	if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0) {
		snprintf(skip_why, sizeof skip_why, "mkdtemp failed");
		return 0;
	}
	snprintf(cmd, sizeof cmd, "%s start %s %d", FIXTURE, dir, SSHD_PORT);
	rc = system(cmd);
	if (rc != 0) {
		print_message("'%s' failed (status %d)\n", cmd, rc);
		return -1; /* sshd should have started: a failure, not a skip */
	}
	sshd_up = true;
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[256];

	(void)state;
	if (dir[0] == '\0')
		return 0;
	snprintf(cmd, sizeof cmd, "%s stop %s %d; rm -rf %s", FIXTURE, dir, SSHD_PORT, dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_setup_errors),
	        cmocka_unit_test(test_streams),
	        cmocka_unit_test(test_streaming_is_live),
	        cmocka_unit_test(test_large_both_streams),
	        cmocka_unit_test(test_binary_output),
	        cmocka_unit_test(test_exit_status),
	        cmocka_unit_test(test_exit_signal),
	        cmocka_unit_test(test_sixty_hosts_concurrently),
	        cmocka_unit_test(test_concurrency_cap),
	        cmocka_unit_test(test_wrong_host_key),
	        cmocka_unit_test(test_host_not_in_known_hosts),
	        cmocka_unit_test(test_known_hosts_by_name),
	        cmocka_unit_test(test_auth_failure),
	        cmocka_unit_test(test_closed_port),
	        cmocka_unit_test(test_silent_server),
	        cmocka_unit_test(test_timeout),
	        cmocka_unit_test(test_cancel),
	        cmocka_unit_test(test_mixed),
	};
	int rc;

	libssh2_init(0);
	rc = cmocka_run_group_tests_name("ssh", tests, group_setup, group_teardown);
	libssh2_exit();
	return rc;
}
