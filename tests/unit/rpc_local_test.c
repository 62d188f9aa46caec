/*
 * Local RPC requests (proto/rpc.c, om_rpc_local_new): the copy of the
 * message, reply and drop callbacks, the two references, cancellation by
 * the creator before, during and after the owner finishes, and a reply
 * from another thread while the creator lets go.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "om/rpc.h"

struct sink {
	int replies, drops;
	enum om_msg_type type;
	uint64_t count;
	char why[64];
};

static void
sink_reply(void *arg, const struct om_msg *rep)
{
	struct sink *s = arg;

	s->replies++;
	s->type = rep->type;
	if (rep->type == OM_MSG_DONE)
		s->count = rep->u.done.count;
}

static void
sink_drop(void *arg, const char *why)
{
	struct sink *s = arg;

	s->drops++;
	snprintf(s->why, sizeof(s->why), "%s", why);
}

static void
test_reply(void **state)
{
	struct om_msg q = {.type = OM_MSG_JOB_SHOW}, done = {.type = OM_MSG_DONE};
	struct sink s = {0};
	struct om_rpc_req *r;

	(void)state;
	q.u.by_id.id = 77;
	r = om_rpc_local_new(&q, sink_reply, sink_drop, &s, "10.0.0.1:5");
	assert_non_null(r);
	assert_true(om_rpc_is_local(r));
	assert_int_equal(r->kind, OM_RPC_REQUEST);
	assert_null(r->session);
	assert_string_equal(r->peer, "10.0.0.1:5");
	assert_int_equal(r->msg.type, OM_MSG_JOB_SHOW);
	assert_int_equal(r->msg.u.by_id.id, 77);
	assert_false(om_rpc_local_cancelled(r));
	done.u.done.count = 3;
	assert_int_equal(om_rpc_reply(r, &done), 0);
	assert_int_equal(s.replies, 1);
	assert_int_equal(s.type, OM_MSG_DONE);
	assert_int_equal(s.count, 3);
	assert_int_equal(s.drops, 0);
	om_rpc_local_release(r); /* the last reference: freed (ASan checks) */
}

static void
test_drop_and_no_msg(void **state)
{
	struct sink s = {0};
	struct om_rpc_req *r;

	(void)state;
	r = om_rpc_local_new(NULL, sink_reply, sink_drop, &s, NULL);
	assert_non_null(r);
	assert_int_equal(r->msg.type, OM_MSG_NONE);
	assert_string_equal(r->peer, "local");
	om_rpc_drop(r, "gone");
	assert_int_equal(s.drops, 1);
	assert_string_equal(s.why, "gone");
	om_rpc_local_release(r);
}

static void
test_cancel_first(void **state)
{
	struct om_msg done = {.type = OM_MSG_DONE};
	struct sink s = {0};
	struct om_rpc_req *r;

	(void)state;
	r = om_rpc_local_new(&done, sink_reply, sink_drop, &s, NULL);
	assert_non_null(r);
	/* the creator gives up first: the owner still finishes, nobody hears it */
	om_rpc_local_release(r);
	assert_true(om_rpc_local_cancelled(r)); /* the owner's reference keeps r alive */
	assert_int_equal(om_rpc_reply(r, &done), 0);
	assert_int_equal(s.replies, 0);
	assert_int_equal(s.drops, 0);
}

static void
test_not_handed_over(void **state)
{
	struct sink s = {0};
	struct om_rpc_req *r;

	(void)state;
	r = om_rpc_local_new(NULL, sink_reply, sink_drop, &s, NULL);
	assert_non_null(r);
	om_rpc_local_release(r);
	om_rpc_drop(r, "queue full");
	assert_int_equal(s.drops, 0);
}

static void
test_bad_message(void **state)
{
	struct om_msg bad = {.type = (enum om_msg_type)250};
	struct sink s = {0};

	(void)state;
	assert_null(om_rpc_local_new(&bad, sink_reply, sink_drop, &s, NULL));
}

/* The owner replies on another thread while the creator lets go. */
struct race {
	struct om_rpc_req *r;
	int slow; /* the callback sleeps, so the release must wait for it */
};

static int race_calls; /* written by the owner thread, read after release returns */

static void
race_reply(void *arg, const struct om_msg *rep)
{
	struct race *x = arg;

	(void)rep;
	if (x->slow)
		usleep(20000);
	race_calls++;
}

static void *
race_owner(void *arg)
{
	struct om_msg done = {.type = OM_MSG_DONE};

	om_rpc_reply(arg, &done); /* the owner's own reference: never x */
	return NULL;
}

static void
test_race(void **state)
{
	int i, before;

	(void)state;
	for (i = 0; i < 200; i++) {
		struct race *x = calloc(1, sizeof(*x));
		pthread_t t;
		assert_non_null(x);
		x->slow = i % 20 == 0;
		x->r = om_rpc_local_new(NULL, race_reply, NULL, x, NULL);
		assert_non_null(x->r);
		before = race_calls;
		assert_int_equal(pthread_create(&t, NULL, race_owner, x->r), 0);
		if (i % 2)
			usleep(100);
		om_rpc_local_release(x->r);
		/* after release no callback runs or will run: x may go now */
		assert_true(race_calls == before || race_calls == before + 1);
		before = race_calls;
		free(x);
		pthread_join(t, NULL);
		assert_int_equal(race_calls, before);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_reply),        cmocka_unit_test(test_drop_and_no_msg),
	        cmocka_unit_test(test_cancel_first), cmocka_unit_test(test_not_handed_over),
	        cmocka_unit_test(test_bad_message),  cmocka_unit_test(test_race),
	};

	return cmocka_run_group_tests_name("rpc_local", tests, NULL, NULL);
}
