/*
 * worker/sim.c: the sim connector's parsing, output and timer queue, then a
 * module run through the engine on simulated hosts (no SSH, no fixture):
 * output, exit code, timing bounds, the forks cap, cancel and timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "sim.h"

#define NHOSTS 8
#define KEEP   (256 * 1024)

/* ------------------------------------------------------------ pieces */

static void
test_parse(void **state)
{
	struct om_sim s;

	(void)state;
	memset(&s, 0, sizeof s);
	assert_int_equal(om_sim_parse("5", &s), 0);
	assert_true(s.on);
	assert_int_equal(s.latency_ms, 5);
	assert_int_equal(s.output_bytes, 0);
	assert_int_equal(om_sim_parse("0:100", &s), 0);
	assert_int_equal(s.latency_ms, 0);
	assert_int_equal(s.output_bytes, 100);
	assert_int_equal(om_sim_parse("250:4K", &s), 0);
	assert_int_equal(s.latency_ms, 250);
	assert_int_equal(s.output_bytes, 4096);
	memset(&s, 0, sizeof s);
	assert_int_equal(om_sim_parse("", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse(":100", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("5:", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("x", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("-1", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("600001", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("5:65M", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse("12345678901234567890", &s), OM_EINVAL);
	assert_int_equal(om_sim_parse(NULL, &s), OM_EINVAL);
	assert_false(s.on);
}

static void
test_fill(void **state)
{
	const char *line = "web01 sim output\n";
	uint8_t a[100], b[40];
	size_t i;

	(void)state;
	om_sim_fill("web01", 0, a, sizeof a);
	for (i = 0; i < sizeof a; i++)
		assert_int_equal(a[i], (uint8_t)line[i % strlen(line)]);
	/* any window gives the same bytes as the whole */
	om_sim_fill("web01", 37, b, sizeof b);
	assert_memory_equal(b, a + 37, sizeof b);
}

static void
test_queue(void **state)
{
	struct om_sim_queue q = {0};
	struct om_sim_timer t[4];

	(void)state;
	memset(t, 0, sizeof t);
	assert_int_equal(om_sim_queue_wait(&q, 0), -1);
	om_sim_queue_add(&q, &t[0], 30);
	om_sim_queue_add(&q, &t[1], 10);
	om_sim_queue_add(&q, &t[2], 20);
	om_sim_queue_add(&q, &t[3], 30);
	assert_int_equal(om_sim_queue_wait(&q, 4), 6);
	assert_null(om_sim_queue_pop(&q, 9));
	om_sim_queue_del(&q, &t[2]);
	om_sim_queue_del(&q, &t[2]); /* not queued: nothing */
	assert_ptr_equal(om_sim_queue_pop(&q, 40), &t[1]);
	assert_ptr_equal(om_sim_queue_pop(&q, 40), &t[0]);
	assert_ptr_equal(om_sim_queue_pop(&q, 40), &t[3]); /* equal times: in order added */
	assert_null(om_sim_queue_pop(&q, 40));
	assert_null(q.head);
	assert_null(q.tail);
}

/* ------------------------------------------------------------ engine */

struct hres {
	int done, state, exit_code;
	uint64_t duration_ms;
	uint8_t out[KEEP];
	size_t out_len, err_len;
};

struct ctx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool finished;
	struct hres res[NHOSTS];
	size_t inflight, max_inflight; /* hosts started (first output) minus done */
};

static void
on_output(void *arg, size_t host, int stream, const uint8_t *data, size_t n)
{
	struct ctx *c = arg;
	struct hres *r = &c->res[host];

	pthread_mutex_lock(&c->mu);
	if (stream == OM_STREAM_STDOUT) {
		if (r->out_len + n <= KEEP)
			memcpy(r->out + r->out_len, data, n);
		r->out_len += n;
	} else {
		r->err_len += n;
	}
	pthread_mutex_unlock(&c->mu);
}

static void
on_done(void *arg, size_t host, const struct om_engine_outcome *o)
{
	struct ctx *c = arg;

	pthread_mutex_lock(&c->mu);
	c->res[host].done++;
	c->res[host].state = o->state;
	c->res[host].exit_code = o->exit_code;
	c->res[host].duration_ms = o->duration_ms;
	pthread_mutex_unlock(&c->mu);
}

static void
on_finished(void *arg)
{
	struct ctx *c = arg;

	pthread_mutex_lock(&c->mu);
	c->finished = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static const struct om_host_api *api;

/* "run": one streamed exec; the host ends with its exit status. */
static void
run_cb(struct om_host_ctx *h, void *arg, int rc, const struct om_exec_result *res)
{
	(void)arg;
	if (rc != 0 || res == NULL)
		api->finish(h, OM_PLUGIN_FAILED, -1, "exec failed");
	else
		api->finish(h, res->exit_status == 0 ? OM_PLUGIN_OK : OM_PLUGIN_FAILED,
		            res->exit_status, NULL);
}

static int
run_start(void *state, struct om_host_ctx *h)
{
	(void)state;
	return api->exec(h, "uname -a", NULL, NULL, 0, OM_EXEC_STREAM, 0, run_cb, NULL);
}

static const struct om_plugin run_desc = {
        .magic = OM_PLUGIN_MAGIC,
        .abi_major = OM_PLUGIN_ABI_MAJOR,
        .abi_minor = OM_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(struct om_plugin),
        .name = "run",
        .version = "1",
        .description = "sim_test module",
        .host_start = run_start,
};
static const struct om_module run_mod = {&run_desc, NULL, "c"};

static char names[NHOSTS][16];
static struct om_ssh_target hosts[NHOSTS];

static struct om_engine *
sim_open(unsigned latency_ms, size_t out_bytes)
{
	struct om_engine_opts o;
	struct om_engine *e = NULL;
	size_t i;

	api = om_engine_host_api();
	for (i = 0; i < NHOSTS; i++) {
		snprintf(names[i], sizeof names[i], "sim%02zu", i);
		hosts[i].name = names[i];
		hosts[i].addr = "192.0.2.1"; /* never connected to */
		hosts[i].user = "root";
	}
	memset(&o, 0, sizeof o);
	o.sim.on = true;
	o.sim.latency_ms = latency_ms;
	o.sim.output_bytes = out_bytes;
	/* no key, no known_hosts: sim needs neither */
	assert_int_equal(om_engine_open(&o, &e), 0);
	return e;
}

/* Runs run_mod on n simulated hosts; returns the wall time in ms. */
static int64_t
sim_run(struct om_engine *e, struct ctx *c, size_t n, unsigned forks, unsigned timeout_s,
        int64_t cancel_after_ms)
{
	static uint64_t id;
	struct om_engine_task t;
	struct om_engine_cb cb = {
	        .output = on_output, .done = on_done, .finished = on_finished, .arg = c};
	int64_t t0 = om_now_ms(), end = t0 + 20000;
	bool cancelled = false;

	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	memset(&t, 0, sizeof t);
	t.id = ++id;
	t.hosts = hosts;
	t.n = n;
	t.module = &run_mod;
	t.forks = forks;
	t.timeout_s = timeout_s;
	assert_int_equal(om_engine_submit(e, &t, &cb), 0);
	pthread_mutex_lock(&c->mu);
	while (!c->finished && om_now_ms() < end) {
		struct timespec ts;

		pthread_mutex_unlock(&c->mu);
		if (cancel_after_ms >= 0 && !cancelled && om_now_ms() - t0 >= cancel_after_ms) {
			om_engine_cancel(e, t.id);
			cancelled = true;
		}
		pthread_mutex_lock(&c->mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 2000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!c->finished)
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	assert_true(c->finished);
	pthread_mutex_unlock(&c->mu);
	return om_now_ms() - t0;
}

static void
ctx_done(struct ctx *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
}

/* Every host: ok, exit 0, its own deterministic output, after the latency. */
static void
test_engine_hosts(void **state)
{
	const size_t bytes = 100000; /* several READ_BUF pieces */
	struct om_engine *e = sim_open(50, bytes);
	struct om_engine_stats st;
	struct ctx *c = calloc(1, sizeof *c);
	uint8_t *want = malloc(bytes);
	int64_t wall;
	size_t i;

	(void)state;
	assert_non_null(c);
	assert_non_null(want);
	wall = sim_run(e, c, NHOSTS, 100, 0, -1);
	/* all at once: about one latency, far below NHOSTS latencies */
	assert_true(wall >= 50);
	assert_true(wall < 50 * NHOSTS);
	for (i = 0; i < NHOSTS; i++) {
		struct hres *r = &c->res[i];

		assert_int_equal(r->done, 1);
		assert_int_equal(r->state, OM_HS_OK);
		assert_int_equal(r->exit_code, 0);
		assert_int_equal(r->err_len, 0);
		assert_int_equal(r->out_len, bytes);
		om_sim_fill(names[i], 0, want, bytes);
		assert_memory_equal(r->out, want, bytes);
		assert_true(r->duration_ms >= 49); /* ms clock granularity */
		assert_true(r->duration_ms < 1000);
	}
	om_engine_stats(e, &st);
	assert_int_equal(st.logins, 0);
	assert_int_equal(st.sessions, 0); /* no SSH at all */
	ctx_done(c);

	/* the forks cap holds: 8 hosts 2 at a time take 4 latencies */
	wall = sim_run(e, c, NHOSTS, 2, 0, -1);
	assert_true(wall >= 4 * 50 - 4);
	assert_true(wall < 4 * 50 + 1000);
	for (i = 0; i < NHOSTS; i++)
		assert_int_equal(c->res[i].state, OM_HS_OK);
	ctx_done(c);
	om_engine_close(e);
	free(want);
	free(c);
}

/* Cancel and timeout stop simulated commands at once, not at their latency. */
static void
test_engine_stop(void **state)
{
	struct om_engine *e = sim_open(10000, 10);
	struct ctx *c = calloc(1, sizeof *c);
	int64_t wall;
	size_t i;

	(void)state;
	assert_non_null(c);
	wall = sim_run(e, c, 3, 0, 0, 100);
	assert_true(wall < 5000);
	for (i = 0; i < 3; i++) {
		assert_int_equal(c->res[i].state, OM_HS_CANCELLED);
		assert_int_equal(c->res[i].out_len, 0);
	}
	ctx_done(c);
	wall = sim_run(e, c, 3, 0, 1, -1);
	assert_true(wall >= 900 && wall < 5000);
	for (i = 0; i < 3; i++)
		assert_int_equal(c->res[i].state, OM_HS_TIMEOUT);
	ctx_done(c);
	om_engine_close(e);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse),
	        cmocka_unit_test(test_fill),
	        cmocka_unit_test(test_queue),
	        cmocka_unit_test(test_engine_hosts),
	        cmocka_unit_test(test_engine_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
