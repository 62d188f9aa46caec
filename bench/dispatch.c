/*
 * om-bench-dispatch: submit -> result latency of the platform alone.
 *
 *   om-bench-dispatch [-n JOBS] [-w WARMUP] [-m MODULE] SELECTOR
 *       OM_MASTER, OM_MASTER_KEY, OM_TOKEN as for omctl
 *
 * One client session (one Noise handshake), then JOBS times, one after the
 * other: SUBMIT (module noop by default, no parameters) and FOLLOW until the
 * master says the job is done.  A job's latency runs from just before the
 * SUBMIT is sent to the answer that says done: the master's checks and
 * inserts, the worker's long-poll wake-up, the module, the report and its
 * commit, and the follower's wake-up.  omctl run would add its own process
 * start and handshake to each job; this measures none of that.  The first
 * WARMUP jobs (default 5) are not counted: the first one opens the host's
 * SSH session, later ones take it from the worker's pool.
 *
 * Prints one JSON object: jobs, ok, p50/p90/p99/min/max/mean in ms for
 * submit (until SUBMITTED) and for the whole job, jobs/s, and the client's
 * own CPU.  Exit 0 when every job was ok, 1 otherwise, 2 on usage or
 * connection errors.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "om/base.h"
#include "om/msg.h"
#include "om/rpc.h"

#define CALL_TIMEOUT_MS 30000
#define FOLLOW_WAIT_MS  5000
#define MAX_JOBS        100000

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double
pct(const double *v, size_t n, double p)
{
	size_t r;

	if (n == 0)
		return 0;
	r = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (r < 1)
		r = 1;
	return v[r > n ? n - 1 : r - 1];
}

static void
print_stats(const char *name, double *v, size_t n)
{
	double sum = 0;

	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf("\"%s\":{\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"min_ms\":%.3f,"
	       "\"max_ms\":%.3f,\"mean_ms\":%.3f}",
	       name, pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), n ? v[0] : 0,
	       n ? v[n - 1] : 0, n ? sum / (double)n : 0);
}

static int
die(const char *fmt, ...)
{
	va_list ap;

	fputs("om-bench-dispatch: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 2;
}

static struct om_rpc_client *
connect_master(void)
{
	const char *url = getenv("OM_MASTER"), *key = getenv("OM_MASTER_KEY");
	const char *token = getenv("OM_TOKEN");
	struct om_rpc_client_opts o;
	struct om_msg auth = {.type = OM_MSG_AUTH}, ans;
	struct om_rpc_client *c;
	int rv;

	if (url == NULL || key == NULL || token == NULL) {
		die("set OM_MASTER, OM_MASTER_KEY and OM_TOKEN");
		return NULL;
	}
	memset(&o, 0, sizeof(o));
	if (om_hex_decode(key, o.master_pub, OM_NOISE_KEYLEN) != 0) {
		die("OM_MASTER_KEY must be 64 hex digits");
		return NULL;
	}
	auth.u.auth.token = (char *)token;
	auth.u.auth.version = OM_PROTO_VERSION;
	o.url = url;
	o.pattern = OM_NOISE_NK;
	o.hello = &auth;
	o.connect_timeout_ms = 5000;
	if ((rv = om_rpc_client_open(&c, &o)) != 0) {
		die("cannot use master address '%s': %s", url, om_strerror(rv));
		return NULL;
	}
	rv = om_rpc_connect(c, &ans);
	if (rv != 0) {
		die("cannot connect to the master at %s: %s", url,
		    rv == OM_EAUTH && ans.u.error.text ? ans.u.error.text : om_strerror(rv));
		om_msg_release(&ans);
		om_rpc_client_close(c);
		return NULL;
	}
	om_msg_release(&ans);
	return c;
}

/*
 * One job: submit, then follow to the end.  *submit_ms and *total_ms are its
 * times; *ok counts hosts that ended ok, *final hosts that ended at all.
 */
static int
one_job(struct om_rpc_client *c, const char *sel, const char *module, double *submit_ms,
        double *total_ms, unsigned *ok, unsigned *final)
{
	struct om_msg req = {.type = OM_MSG_SUBMIT}, rep;
	uint64_t job, cursor = 0;
	double t0 = now_ms();
	int rv;

	req.u.submit.selector = (char *)sel;
	req.u.submit.module = (char *)module;
	if ((rv = om_rpc_call(c, &req, &rep, CALL_TIMEOUT_MS)) != 0)
		return die("submit failed: %s", om_strerror(rv));
	if (rep.type != OM_MSG_SUBMITTED) {
		die("submit refused: %s", rep.type == OM_MSG_ERROR && rep.u.error.text
		                                  ? rep.u.error.text
		                                  : "unexpected answer");
		om_msg_release(&rep);
		return 2;
	}
	*submit_ms = now_ms() - t0;
	job = rep.u.submitted.job_id;
	om_msg_release(&rep);
	for (int polls = 0; polls < 100; polls++) {
		struct om_msg f = {.type = OM_MSG_FOLLOW}, ev;
		bool done;

		f.u.follow.job_id = job;
		f.u.follow.cursor = cursor;
		f.u.follow.wait_ms = FOLLOW_WAIT_MS;
		if ((rv = om_rpc_call(c, &f, &ev, FOLLOW_WAIT_MS + CALL_TIMEOUT_MS)) != 0)
			return die("follow failed: %s", om_strerror(rv));
		if (ev.type != OM_MSG_EVENTS) {
			die("follow refused: %s", ev.type == OM_MSG_ERROR && ev.u.error.text
			                                  ? ev.u.error.text
			                                  : "unexpected answer");
			om_msg_release(&ev);
			return 2;
		}
		for (uint32_t i = 0; i < ev.u.events.nevents; i++) {
			const struct om_event *e = &ev.u.events.events[i];

			if (e->kind == OM_EV_STATE && om_host_state_final((int)e->state)) {
				(*final)++;
				if (e->state == OM_HS_OK)
					(*ok)++;
			}
		}
		cursor = ev.u.events.cursor;
		done = ev.u.events.done;
		om_msg_release(&ev);
		if (done) {
			*total_ms = now_ms() - t0;
			return 0;
		}
	}
	return die("job %llu not done after 100 follows", (unsigned long long)job);
}

static double
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

int
main(int argc, char **argv)
{
	unsigned long jobs = 200, warmup = 5;
	const char *module = "noop", *sel;
	double *sub, *tot, t0, wall, cpu0;
	unsigned ok = 0, final = 0, wok = 0, wfinal = 0;
	struct om_rpc_client *c;
	int ch, rv = 0;

	while ((ch = getopt(argc, argv, "n:w:m:")) != -1) {
		switch (ch) {
		case 'n':
			jobs = strtoul(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtoul(optarg, NULL, 10);
			break;
		case 'm':
			module = optarg;
			break;
		default:
			return die("usage: om-bench-dispatch [-n JOBS] [-w WARMUP] [-m MODULE] "
			           "SELECTOR");
		}
	}
	if (optind != argc - 1 || jobs == 0 || jobs > MAX_JOBS || warmup > MAX_JOBS)
		return die("usage: om-bench-dispatch [-n 1..%d] [-w WARMUP] [-m MODULE] SELECTOR",
		           MAX_JOBS);
	sel = argv[optind];
	if ((c = connect_master()) == NULL)
		return 2;
	sub = calloc(jobs, sizeof(*sub));
	tot = calloc(jobs, sizeof(*tot));
	if (sub == NULL || tot == NULL)
		return die("out of memory");
	for (unsigned long i = 0; i < warmup && rv == 0; i++) {
		double s, t;

		rv = one_job(c, sel, module, &s, &t, &wok, &wfinal);
	}
	t0 = now_ms();
	cpu0 = cpu_ms();
	for (unsigned long i = 0; i < jobs && rv == 0; i++)
		rv = one_job(c, sel, module, &sub[i], &tot[i], &ok, &final);
	wall = now_ms() - t0;
	if (rv != 0) {
		om_rpc_client_close(c);
		return rv;
	}
	printf("{\"module\":\"%s\",\"selector\":\"%s\",\"jobs\":%lu,\"warmup\":%lu,"
	       "\"hosts_final\":%u,\"hosts_ok\":%u,\"wall_s\":%.3f,\"jobs_per_s\":%.1f,"
	       "\"client_cpu_ms_per_job\":%.3f,",
	       module, sel, jobs, warmup, final, ok, wall / 1e3, (double)jobs * 1e3 / wall,
	       (cpu_ms() - cpu0) / (double)jobs);
	print_stats("submit", sub, jobs);
	putchar(',');
	print_stats("total", tot, jobs);
	puts("}");
	om_rpc_client_close(c);
	free(sub);
	free(tot);
	return ok == final && final > 0 ? 0 : 1;
}
