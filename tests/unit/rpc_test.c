/*
 * Tests for proto/rpc.c: a real nng server and client on loopback, in one
 * process.  The server runs its owner loop in a thread, as om-master does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "om/rpc.h"

#define URL "tcp://127.0.0.1:26611"

struct srv {
	struct om_rpc_server *s;
	struct om_keypair key;
	pthread_t thread;
	volatile int stop;
	int handshakes, requests;
};

static void
serve_one(struct srv *v, struct om_rpc_req *r)
{
	if (r->kind == OM_RPC_HANDSHAKE) {
		struct om_msg w = {.type = OM_MSG_WELCOME};
		v->handshakes++;
		if (r->msg.type == OM_MSG_HELLO && strcmp(r->msg.u.hello.secret, "good") == 0) {
			w.u.welcome.worker_id = 7;
			om_rpc_accept(r, &w, NULL, NULL);
		} else {
			om_rpc_refuse(r, OM_EAUTH, "wrong secret");
		}
		return;
	}
	v->requests++;
	if (r->msg.type == OM_MSG_POLL) {
		struct om_msg none = {.type = OM_MSG_NOTASK};
		om_rpc_reply(r, &none);
	} else if (r->msg.type == OM_MSG_HEARTBEAT) {
		struct om_msg ack = {.type = OM_MSG_ACK};
		ack.u.ack.nchunks = r->msg.u.heartbeat.running;
		om_rpc_reply(r, &ack);
	} else {
		om_rpc_drop(r, "not permitted in this test");
	}
}

static void *
serve(void *arg)
{
	struct srv *v = arg;

	while (!v->stop) {
		struct om_rpc_req *r;
		while ((r = om_rpc_server_take(v->s)) != NULL)
			serve_one(v, r);
		usleep(2000);
	}
	return NULL;
}

static void
srv_start(struct srv *v, unsigned patterns)
{
	struct om_rpc_server_opts o;

	memset(&o, 0, sizeof(o));
	o.url = URL;
	o.key = &v->key;
	o.patterns = patterns;
	o.nctx = 8;
	o.max_frame = OM_MAX_FRAME + 64;
	o.session_idle_ms = 60000;
	o.name = "test";
	assert_int_equal(om_rpc_server_open(&v->s, &o), 0);
	v->stop = 0;
	assert_int_equal(pthread_create(&v->thread, NULL, serve, v), 0);
}

static void
srv_stop(struct srv *v)
{
	v->stop = 1;
	pthread_join(v->thread, NULL);
	om_rpc_server_close(v->s);
	v->s = NULL;
}

static struct om_rpc_client *
client(const struct srv *v, const struct om_keypair *me, const uint8_t *pin, const char *secret)
{
	struct om_rpc_client_opts o;
	struct om_msg hello = {.type = OM_MSG_HELLO};
	struct om_rpc_client *c;

	memset(&o, 0, sizeof(o));
	hello.u.hello.name = "w1";
	hello.u.hello.idc = "bj";
	hello.u.hello.secret = (char *)secret;
	hello.u.hello.version = OM_PROTO_VERSION;
	o.url = URL;
	o.pattern = OM_NOISE_IK;
	o.local = me;
	memcpy(o.master_pub, pin ? pin : v->key.pub, OM_NOISE_KEYLEN);
	o.hello = &hello;
	o.connect_timeout_ms = 1500;
	assert_int_equal(om_rpc_client_open(&c, &o), 0);
	return c;
}

static void
test_call(void **state)
{
	struct srv v = {0};
	struct om_keypair me;
	struct om_rpc_client *c;
	struct om_msg req = {.type = OM_MSG_HEARTBEAT}, rep, welcome;
	int i;

	(void)state;
	assert_int_equal(om_keypair_generate(&v.key), 0);
	assert_int_equal(om_keypair_generate(&me), 0);
	srv_start(&v, 1u << OM_NOISE_IK);
	c = client(&v, &me, NULL, "good");
	assert_int_equal(om_rpc_connect(c, &welcome), 0);
	assert_int_equal(welcome.type, OM_MSG_WELCOME);
	assert_int_equal(welcome.u.welcome.worker_id, 7);
	om_msg_release(&welcome);
	for (i = 0; i < 20; i++) {
		req.u.heartbeat.running = (uint32_t)i;
		assert_int_equal(om_rpc_call(c, &req, &rep, 3000), 0);
		assert_int_equal(rep.type, OM_MSG_ACK);
		assert_int_equal(rep.u.ack.nchunks, (uint32_t)i);
		om_msg_release(&rep);
	}
	assert_int_equal(v.handshakes, 1);
	om_rpc_client_close(c);
	srv_stop(&v);
}

static void
test_refused(void **state)
{
	struct srv v = {0};
	struct om_keypair me;
	struct om_rpc_client *c;
	struct om_msg ans, req = {.type = OM_MSG_POLL}, rep;

	(void)state;
	om_keypair_generate(&v.key);
	om_keypair_generate(&me);
	srv_start(&v, 1u << OM_NOISE_IK);
	c = client(&v, &me, NULL, "bad");
	assert_int_equal(om_rpc_connect(c, &ans), OM_EAUTH);
	assert_int_equal(ans.type, OM_MSG_ERROR);
	assert_string_equal(ans.u.error.text, "wrong secret");
	om_msg_release(&ans);
	/* Calls without a session never reach the server's handlers. */
	assert_int_equal(om_rpc_call(c, &req, &rep, 1000), OM_EAUTH);
	assert_int_equal(v.requests, 0);
	om_rpc_client_close(c);
	srv_stop(&v);
}

static void
test_wrong_master_key(void **state)
{
	struct srv v = {0};
	struct om_keypair me, other;
	struct om_rpc_client *c;
	struct om_msg ans;

	(void)state;
	om_keypair_generate(&v.key);
	om_keypair_generate(&me);
	om_keypair_generate(&other);
	srv_start(&v, 1u << OM_NOISE_IK);
	/* Pinned to a key the server does not hold: the server cannot read message 1. */
	c = client(&v, &me, other.pub, "good");
	assert_int_not_equal(om_rpc_connect(c, &ans), 0);
	assert_int_equal(v.handshakes, 0);
	om_rpc_client_close(c);
	srv_stop(&v);
}

static void
test_pattern_not_allowed(void **state)
{
	struct srv v = {0};
	struct om_keypair me;
	struct om_rpc_client *c;
	struct om_msg ans;

	(void)state;
	om_keypair_generate(&v.key);
	om_keypair_generate(&me);
	srv_start(&v, 1u << OM_NOISE_NK); /* a client endpoint: IK is not accepted */
	c = client(&v, &me, NULL, "good");
	assert_int_not_equal(om_rpc_connect(c, &ans), 0);
	assert_int_equal(v.handshakes, 0);
	om_rpc_client_close(c);
	srv_stop(&v);
}

static void
test_server_restart_resets_session(void **state)
{
	struct srv v = {0};
	struct om_keypair me;
	struct om_rpc_client *c;
	struct om_msg req = {.type = OM_MSG_POLL}, rep;

	(void)state;
	om_keypair_generate(&v.key);
	om_keypair_generate(&me);
	srv_start(&v, 1u << OM_NOISE_IK);
	c = client(&v, &me, NULL, "good");
	assert_int_equal(om_rpc_call(c, &req, &rep, 3000), 0);
	assert_int_equal(rep.type, OM_MSG_NOTASK);
	om_msg_release(&rep);
	srv_stop(&v);
	/* Same key, new process state: the old session is unknown there. */
	v.handshakes = 0;
	srv_start(&v, 1u << OM_NOISE_IK);
	{
		int rv = OM_ETIMEDOUT, tries;
		for (tries = 0; tries < 10 && rv != 0; tries++)
			rv = om_rpc_call(c, &req, &rep, 2000);
		assert_int_equal(rv, 0);
	}
	assert_int_equal(rep.type, OM_MSG_NOTASK);
	om_msg_release(&rep);
	assert_int_equal(v.handshakes, 1);
	om_rpc_client_close(c);
	srv_stop(&v);
}

static void
test_unpermitted_op_dropped(void **state)
{
	struct srv v = {0};
	struct om_keypair me;
	struct om_rpc_client *c;
	struct om_msg req = {.type = OM_MSG_WORKERS_LIST}, rep;

	(void)state;
	om_keypair_generate(&v.key);
	om_keypair_generate(&me);
	srv_start(&v, 1u << OM_NOISE_IK);
	c = client(&v, &me, NULL, "good");
	assert_int_not_equal(om_rpc_call(c, &req, &rep, 1000), 0);
	/* The server is still serving. */
	req.type = OM_MSG_POLL;
	{
		int rv = -1, tries;
		for (tries = 0; tries < 5 && rv != 0; tries++)
			rv = om_rpc_call(c, &req, &rep, 2000);
		assert_int_equal(rv, 0);
	}
	om_msg_release(&rep);
	om_rpc_client_close(c);
	srv_stop(&v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_call),
	        cmocka_unit_test(test_refused),
	        cmocka_unit_test(test_wrong_master_key),
	        cmocka_unit_test(test_pattern_not_allowed),
	        cmocka_unit_test(test_server_restart_resets_session),
	        cmocka_unit_test(test_unpermitted_op_dropped),
	};
	return cmocka_run_group_tests_name("rpc", tests, NULL, NULL);
}
