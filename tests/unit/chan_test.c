/*
 * proto/chan.c: handshakes through the frame layer, DATA frames, the replay
 * window, and key files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "om/base.h"
#include "om/chan.h"

#define BOTH ((1u << OM_NOISE_IK) | (1u << OM_NOISE_NK))
#define SID  UINT64_C(0x0123456789abcdef)

static struct om_keypair master, worker, other;

static int
group_setup(void **state)
{
	(void)state;
	if (om_keypair_generate(&master) != 0 || om_keypair_generate(&worker) != 0 ||
	    om_keypair_generate(&other) != 0)
		return -1;
	return 0;
}

static const uint8_t hello[] = "hello: worker w1";
static const uint8_t welcome[] = "welcome";

/* A full handshake; w is the initiator's channel, m the responder's. */
static void
handshake(enum om_noise_pattern pat, struct om_chan *w, struct om_chan *m)
{
	struct om_noise_hs *ihs = NULL, *rhs = NULL;
	struct om_buf f1, f2;
	enum om_noise_pattern got;
	uint8_t pl[OM_CHAN_MAX_HS_PAYLOAD];
	size_t plen;
	uint8_t type;
	uint64_t sid;

	om_buf_init(&f1, OM_CHAN_MAX_HS_FRAME);
	om_buf_init(&f2, OM_CHAN_MAX_HS_FRAME);
	assert_int_equal(om_chan_initiate(pat, pat == OM_NOISE_IK ? &worker : NULL, master.pub,
	                                  hello, sizeof(hello), &ihs, &f1),
	                 0);
	assert_non_null(ihs);
	assert_int_equal(om_frame_peek(f1.data, f1.len, &type, &sid), 0);
	assert_int_equal(type, OM_FRAME_HS1);
	assert_int_equal(sid, 0);

	assert_int_equal(
	        om_chan_accept(&master, BOTH, f1.data, f1.len, &got, &rhs, pl, sizeof(pl), &plen),
	        0);
	assert_int_equal(got, pat);
	assert_int_equal(plen, sizeof(hello));
	assert_memory_equal(pl, hello, plen);

	assert_int_equal(om_chan_respond(rhs, SID, welcome, sizeof(welcome), m, &f2), 0);
	assert_int_equal(om_frame_peek(f2.data, f2.len, &type, &sid), 0);
	assert_int_equal(type, OM_FRAME_HS2);
	assert_int_equal(sid, SID);

	assert_int_equal(om_chan_complete(ihs, f2.data, f2.len, w, pl, sizeof(pl), &plen), 0);
	assert_int_equal(plen, sizeof(welcome));
	assert_memory_equal(pl, welcome, plen);

	assert_int_equal(w->sid, SID);
	assert_int_equal(m->sid, SID);
	assert_memory_equal(w->tx, m->rx, OM_NOISE_KEYLEN);
	assert_memory_equal(w->rx, m->tx, OM_NOISE_KEYLEN);
	assert_memory_not_equal(w->tx, w->rx, OM_NOISE_KEYLEN);
	assert_int_equal(w->tx_ctr, 0);
	assert_int_equal(m->tx_ctr, 0);
	assert_true(w->established_ms > 0 && m->established_ms > 0);
	if (pat == OM_NOISE_IK) {
		assert_true(m->has_remote_static);
		assert_memory_equal(m->remote_static, worker.pub, OM_NOISE_KEYLEN);
	} else {
		assert_false(m->has_remote_static);
	}
	/* The initiator's peer is the pinned master. */
	assert_true(w->has_remote_static);
	assert_memory_equal(w->remote_static, master.pub, OM_NOISE_KEYLEN);

	om_noise_hs_free(ihs);
	om_noise_hs_free(rhs);
	om_buf_release(&f1);
	om_buf_release(&f2);
}

static void
seal(struct om_chan *c, const void *p, size_t n, struct om_buf *out)
{
	om_buf_init(out, 1 << 20);
	assert_int_equal(om_chan_seal(c, p, n, out), 0);
	assert_int_equal(out->len, OM_FRAME_HDR + n + OM_NOISE_TAGLEN);
}

static void
open_ok(struct om_chan *c, const struct om_buf *f, const void *want, size_t n)
{
	struct om_buf pt;

	om_buf_init(&pt, 1 << 20);
	assert_int_equal(om_chan_open(c, f->data, f->len, &pt), 0);
	assert_int_equal(pt.len, n);
	if (n)
		assert_memory_equal(pt.data, want, n);
	om_buf_release(&pt);
}

static int
open_rv(struct om_chan *c, const uint8_t *f, size_t n)
{
	struct om_buf pt;
	int rv;

	om_buf_init(&pt, 1 << 20);
	rv = om_chan_open(c, f, n, &pt);
	/* A refused frame leaves nothing in the output. */
	if (rv != 0)
		assert_int_equal(pt.len, 0);
	om_buf_release(&pt);
	return rv;
}

static void
roundtrip(enum om_noise_pattern pat)
{
	struct om_chan w, m;
	struct om_buf f;
	char msg[64];
	int i;

	handshake(pat, &w, &m);
	for (i = 0; i < 20; i++) {
		snprintf(msg, sizeof(msg), "message %d", i);
		seal(&w, msg, strlen(msg), &f);
		open_ok(&m, &f, msg, strlen(msg));
		om_buf_release(&f);
		seal(&m, msg, strlen(msg), &f);
		open_ok(&w, &f, msg, strlen(msg));
		om_buf_release(&f);
	}
	assert_int_equal(w.tx_ctr, 20);
	assert_int_equal(m.tx_ctr, 20);
	/* A frame is bound to its direction (a fresh counter, so not a replay). */
	m.tx_ctr = 500;
	seal(&m, "reflected", 9, &f);
	assert_int_equal(open_rv(&m, f.data, f.len), OM_ECRYPTO);
	open_ok(&w, &f, "reflected", 9);
	om_buf_release(&f);
	/* Empty payloads are frames too. */
	seal(&w, NULL, 0, &f);
	open_ok(&m, &f, NULL, 0);
	om_buf_release(&f);
	om_chan_wipe(&w);
	om_chan_wipe(&m);
	assert_int_equal(w.sid, 0);
}

static void
test_ik(void **state)
{
	(void)state;
	roundtrip(OM_NOISE_IK);
}

static void
test_nk(void **state)
{
	(void)state;
	roundtrip(OM_NOISE_NK);
}

static void
test_pattern_policy(void **state)
{
	struct om_noise_hs *ihs, *rhs;
	struct om_buf f;
	enum om_noise_pattern got;
	uint8_t pl[64];
	size_t plen;

	(void)state;
	om_buf_init(&f, OM_CHAN_MAX_HS_FRAME);
	assert_int_equal(om_chan_initiate(OM_NOISE_NK, NULL, master.pub, NULL, 0, &ihs, &f), 0);
	assert_int_equal(om_chan_accept(&master, 1u << OM_NOISE_IK, f.data, f.len, &got, &rhs, pl,
	                                sizeof(pl), &plen),
	                 OM_EPERM);
	assert_null(rhs);
	om_noise_hs_free(ihs);
	/* Arguments that do not fit the pattern. */
	assert_int_equal(om_chan_initiate(OM_NOISE_IK, NULL, master.pub, NULL, 0, &ihs, &f),
	                 OM_EINVAL);
	assert_int_equal(om_chan_initiate(OM_NOISE_NK, &worker, master.pub, NULL, 0, &ihs, &f),
	                 OM_EINVAL);
	assert_null(ihs);
	om_buf_release(&f);
}

static void
test_wrong_master(void **state)
{
	struct om_noise_hs *ihs, *rhs;
	struct om_buf f;
	enum om_noise_pattern got, pats[2] = {OM_NOISE_IK, OM_NOISE_NK};
	uint8_t pl[64];
	size_t plen;
	int i;

	(void)state;
	for (i = 0; i < 2; i++) {
		om_buf_init(&f, OM_CHAN_MAX_HS_FRAME);
		assert_int_equal(om_chan_initiate(pats[i], pats[i] == OM_NOISE_IK ? &worker : NULL,
		                                  other.pub, hello, sizeof(hello), &ihs, &f),
		                 0);
		assert_int_equal(om_chan_accept(&master, BOTH, f.data, f.len, &got, &rhs, pl,
		                                sizeof(pl), &plen),
		                 OM_ECRYPTO);
		assert_null(rhs);
		assert_int_equal(plen, 0);
		om_noise_hs_free(ihs);
		om_buf_release(&f);
	}
}

static void
test_hs_bounds(void **state)
{
	static uint8_t big[OM_CHAN_MAX_HS_FRAME + 1];
	struct om_noise_hs *ihs, *rhs;
	struct om_buf f;
	enum om_noise_pattern got;
	uint8_t pl[OM_CHAN_MAX_HS_PAYLOAD + 100];
	size_t plen;

	(void)state;
	om_buf_init(&f, 1 << 20);
	assert_int_equal(om_chan_initiate(OM_NOISE_NK, NULL, master.pub, big,
	                                  OM_CHAN_MAX_HS_PAYLOAD + 1, &ihs, &f),
	                 OM_EMSGSIZE);
	/* An oversized HS1 is refused before any work. */
	big[0] = OM_FRAME_HS1;
	big[1] = OM_CHAN_VERSION;
	big[2] = OM_NOISE_NK;
	assert_int_equal(
	        om_chan_accept(&master, BOTH, big, sizeof(big), &got, &rhs, pl, sizeof(pl), &plen),
	        OM_EMSGSIZE);
	/* Within the frame bound but with a payload over the handshake limit. */
	assert_int_equal(om_chan_accept(&master, BOTH, big, 3 + 48 + OM_CHAN_MAX_HS_PAYLOAD + 1,
	                                &got, &rhs, pl, sizeof(pl), &plen),
	                 OM_EMSGSIZE);
	/* The largest payload allowed works. */
	assert_int_equal(om_chan_initiate(OM_NOISE_NK, NULL, master.pub, big + 3,
	                                  OM_CHAN_MAX_HS_PAYLOAD, &ihs, &f),
	                 0);
	assert_true(f.len <= OM_CHAN_MAX_HS_FRAME);
	assert_int_equal(
	        om_chan_accept(&master, BOTH, f.data, f.len, &got, &rhs, pl, sizeof(pl), &plen), 0);
	assert_int_equal(plen, OM_CHAN_MAX_HS_PAYLOAD);
	om_noise_hs_free(ihs);
	om_noise_hs_free(rhs);
	/* Bad header bytes and short frames. */
	assert_int_equal(om_chan_accept(&master, BOTH, big, 0, &got, &rhs, pl, sizeof(pl), &plen),
	                 OM_EPROTO);
	big[1] = 2;
	assert_int_equal(om_chan_accept(&master, BOTH, big, 100, &got, &rhs, pl, sizeof(pl), &plen),
	                 OM_EPROTO);
	big[1] = OM_CHAN_VERSION;
	big[2] = 3;
	assert_int_equal(om_chan_accept(&master, BOTH, big, 100, &got, &rhs, pl, sizeof(pl), &plen),
	                 OM_EPROTO);
	big[2] = OM_NOISE_IK;
	assert_int_equal(
	        om_chan_accept(&master, BOTH, big, 3 + 95, &got, &rhs, pl, sizeof(pl), &plen),
	        OM_EPROTO);
	om_buf_release(&f);
}

/* Every bit of HS1 and HS2 matters, the clear sid of HS2 included. */
static void
test_hs_tamper(void **state)
{
	struct om_noise_hs *ihs, *rhs;
	struct om_buf f1, f2;
	struct om_chan w, m;
	enum om_noise_pattern got;
	uint8_t pl[64], bad[512];
	size_t plen, i, n;
	int bit;

	(void)state;
	om_buf_init(&f1, OM_CHAN_MAX_HS_FRAME);
	assert_int_equal(
	        om_chan_initiate(OM_NOISE_IK, &worker, master.pub, hello, sizeof(hello), &ihs, &f1),
	        0);
	n = f1.len;
	for (i = 0; i < n; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, f1.data, n);
			bad[i] ^= (uint8_t)(1u << bit);
			assert_int_not_equal(om_chan_accept(&master, BOTH, bad, n, &got, &rhs, pl,
			                                    sizeof(pl), &plen),
			                     0);
			assert_null(rhs);
		}
	}
	om_noise_hs_free(ihs);
	om_buf_release(&f1);

	for (i = 0;; i++) {
		om_buf_init(&f1, OM_CHAN_MAX_HS_FRAME);
		om_buf_init(&f2, OM_CHAN_MAX_HS_FRAME);
		assert_int_equal(om_chan_initiate(OM_NOISE_NK, NULL, master.pub, hello,
		                                  sizeof(hello), &ihs, &f1),
		                 0);
		assert_int_equal(om_chan_accept(&master, BOTH, f1.data, f1.len, &got, &rhs, pl,
		                                sizeof(pl), &plen),
		                 0);
		assert_int_equal(om_chan_respond(rhs, SID, welcome, sizeof(welcome), &m, &f2), 0);
		n = f2.len;
		if (i == n) {
			om_noise_hs_free(ihs);
			om_noise_hs_free(rhs);
			om_buf_release(&f1);
			om_buf_release(&f2);
			break;
		}
		for (bit = 0; bit < 8; bit++) {
			struct om_noise_hs *h2;

			memcpy(bad, f2.data, n);
			bad[i] ^= (uint8_t)(1u << bit);
			/* A failed read spoils the handshake: one per flip. */
			om_buf_reset(&f1);
			assert_int_equal(om_chan_initiate(OM_NOISE_NK, NULL, master.pub, hello,
			                                  sizeof(hello), &h2, &f1),
			                 0);
			assert_int_not_equal(
			        om_chan_complete(h2, bad, n, &w, pl, sizeof(pl), &plen), 0);
			om_noise_hs_free(h2);
		}
		/* The same frame unaltered still completes the original handshake. */
		assert_int_equal(om_chan_complete(ihs, f2.data, n, &w, pl, sizeof(pl), &plen), 0);
		om_noise_hs_free(ihs);
		om_noise_hs_free(rhs);
		om_buf_release(&f1);
		om_buf_release(&f2);
	}
}

static void
test_replay(void **state)
{
	struct om_chan w, m;
	struct om_buf f;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	seal(&w, "x", 1, &f);
	open_ok(&m, &f, "x", 1);
	assert_int_equal(open_rv(&m, f.data, f.len), OM_EREPLAY);
	om_buf_release(&f);
}

static void
test_reorder(void **state)
{
	struct om_chan w, m;
	struct om_buf f[64];
	char msg[16];
	int i, j;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	for (i = 0; i < 64; i++) {
		snprintf(msg, sizeof(msg), "%d", i);
		seal(&w, msg, strlen(msg), &f[i]);
	}
	/* Odd ones backwards, then even ones forwards: each exactly once. */
	for (i = 63; i >= 1; i -= 2) {
		snprintf(msg, sizeof(msg), "%d", i);
		open_ok(&m, &f[i], msg, strlen(msg));
	}
	for (i = 0; i < 64; i += 2) {
		snprintf(msg, sizeof(msg), "%d", i);
		open_ok(&m, &f[i], msg, strlen(msg));
		for (j = 0; j <= i; j++)
			assert_int_equal(open_rv(&m, f[j].data, f[j].len), OM_EREPLAY);
	}
	for (i = 0; i < 64; i++) {
		assert_int_equal(open_rv(&m, f[i].data, f[i].len), OM_EREPLAY);
		om_buf_release(&f[i]);
	}
}

static void
test_window_edge(void **state)
{
	struct om_chan w, m;
	struct om_buf *f;
	int i, n = OM_REPLAY_WINDOW + 100;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	f = calloc((size_t)n, sizeof(*f));
	assert_non_null(f);
	for (i = 0; i < n; i++)
		seal(&w, &i, sizeof(i), &f[i]);
	/* Highest first: top = n, so counters < n - WINDOW are too old. */
	i = n - 1;
	open_ok(&m, &f[i], &i, sizeof(i));
	for (i = 0; i < n - OM_REPLAY_WINDOW; i++)
		assert_int_equal(open_rv(&m, f[i].data, f[i].len), OM_EREPLAY);
	/* The oldest counter still inside the window. */
	i = n - OM_REPLAY_WINDOW;
	open_ok(&m, &f[i], &i, sizeof(i));
	assert_int_equal(open_rv(&m, f[i].data, f[i].len), OM_EREPLAY);
	for (i = n - OM_REPLAY_WINDOW + 1; i < n - 1; i++)
		open_ok(&m, &f[i], &i, sizeof(i));
	for (i = 0; i < n; i++) {
		assert_int_equal(open_rv(&m, f[i].data, f[i].len), OM_EREPLAY);
		om_buf_release(&f[i]);
	}
	free(f);
}

static void
test_truncated(void **state)
{
	struct om_chan w, m;
	struct om_buf f;
	size_t n;

	(void)state;
	handshake(OM_NOISE_NK, &w, &m);
	seal(&w, "some payload", 12, &f);
	for (n = 0; n < f.len; n++) {
		int rv = open_rv(&m, f.data, n);

		assert_true(rv == OM_EPROTO || rv == OM_ECRYPTO);
		assert_int_equal(m.rx_win.top, 0);
	}
	open_ok(&m, &f, "some payload", 12);
	om_buf_release(&f);
}

static void
test_bitflips(void **state)
{
	struct om_chan w, m;
	struct om_buf f[3];
	struct om_replay before;
	uint8_t bad[64];
	size_t i;
	int bit, k;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	for (k = 0; k < 3; k++)
		seal(&w, "payload", 7, &f[k]);
	open_ok(&m, &f[1], "payload", 7); /* top = 2 */
	before = m.rx_win;
	for (i = 0; i < f[2].len; i++) {
		for (bit = 0; bit < 8; bit++) {
			int rv;

			memcpy(bad, f[2].data, f[2].len);
			bad[i] ^= (uint8_t)(1u << bit);
			rv = open_rv(&m, bad, f[2].len);
			if (i == 0)
				assert_int_equal(rv, OM_EPROTO);
			else if (i < 9)
				assert_int_equal(rv, OM_ESESSION);
			else
				assert_true(rv == OM_ECRYPTO || rv == OM_EREPLAY);
			assert_memory_equal(&m.rx_win, &before, sizeof(before));
		}
	}
	/* Both the earlier and the later frame still open. */
	open_ok(&m, &f[0], "payload", 7);
	open_ok(&m, &f[2], "payload", 7);
	for (k = 0; k < 3; k++)
		om_buf_release(&f[k]);
}

static void
test_wrong_sid(void **state)
{
	struct om_chan w, m;
	struct om_buf f;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	seal(&w, "p", 1, &f);
	m.sid ^= 1;
	assert_int_equal(open_rv(&m, f.data, f.len), OM_ESESSION);
	m.sid ^= 1;
	open_ok(&m, &f, "p", 1);
	om_buf_release(&f);
}

static void
test_forged_counter(void **state)
{
	struct om_chan w, m;
	struct om_buf f, forged;
	uint64_t huge = UINT64_C(1) << 62;
	uint8_t ctr[8];
	int i;

	(void)state;
	handshake(OM_NOISE_IK, &w, &m);
	seal(&w, "first", 5, &f);
	/* A frame with our sid, a huge counter and garbage instead of a tag. */
	om_buf_init(&forged, 256);
	om_buf_append(&forged, f.data, 9);
	for (i = 7; i >= 0; i--)
		ctr[7 - i] = (uint8_t)(huge >> (8 * i));
	om_buf_append(&forged, ctr, 8);
	om_buf_append(&forged, "forged payload and a fake tag", 29);
	assert_int_equal(forged.err, 0);
	assert_int_equal(open_rv(&m, forged.data, forged.len), OM_ECRYPTO);
	assert_int_equal(m.rx_win.top, 0);
	/* Counter 2^64-1 is reserved. */
	memset(forged.data + 9, 0xff, 8);
	assert_int_equal(open_rv(&m, forged.data, forged.len), OM_EREPLAY);
	open_ok(&m, &f, "first", 5);
	om_buf_release(&f);
	om_buf_release(&forged);
}

static void
test_buffer_limits(void **state)
{
	struct om_chan w, m;
	struct om_buf f, small;
	uint8_t payload[100];

	(void)state;
	memset(payload, 'q', sizeof(payload));
	handshake(OM_NOISE_IK, &w, &m);
	/* A seal that does not fit leaves the buffer and the counter alone. */
	om_buf_init(&small, 50);
	om_buf_append(&small, "abc", 3);
	assert_int_equal(om_chan_seal(&w, payload, sizeof(payload), &small), OM_EMSGSIZE);
	assert_int_equal(small.len, 3);
	assert_int_equal(w.tx_ctr, 0);
	om_buf_release(&small);
	/* An open that does not fit commits nothing. */
	seal(&w, payload, sizeof(payload), &f);
	om_buf_init(&small, 50);
	assert_int_equal(om_chan_open(&m, f.data, f.len, &small), OM_EMSGSIZE);
	assert_int_equal(m.rx_win.top, 0);
	om_buf_release(&small);
	open_ok(&m, &f, payload, sizeof(payload));
	/* The plaintext is appended after what the buffer held. */
	om_buf_release(&f);
	seal(&w, "tail", 4, &f);
	om_buf_init(&small, 100);
	om_buf_append(&small, "head:", 5);
	assert_int_equal(om_chan_open(&m, f.data, f.len, &small), 0);
	assert_int_equal(small.len, 9);
	assert_memory_equal(small.data, "head:tail", 9);
	om_buf_release(&small);
	om_buf_release(&f);
	/* The last counter is never used. */
	w.tx_ctr = UINT64_MAX;
	om_buf_init(&f, 100);
	assert_int_equal(om_chan_seal(&w, (const uint8_t *)"x", 1, &f), OM_ERANGE);
	assert_int_equal(f.len, 0);
	om_buf_release(&f);
}

static void
test_replay_unit(void **state)
{
	struct om_replay r;
	uint64_t c;

	(void)state;
	om_replay_init(&r);
	assert_int_equal(om_replay_check(&r, 0), 0);
	assert_int_equal(om_replay_check(&r, UINT64_MAX), OM_EREPLAY);
	om_replay_commit(&r, 5);
	assert_int_equal(r.top, 6);
	for (c = 0; c < 5; c++)
		assert_int_equal(om_replay_check(&r, c), 0);
	assert_int_equal(om_replay_check(&r, 5), OM_EREPLAY);
	/* A jump by exactly the window: old bits must not alias new counters. */
	om_replay_commit(&r, 5 + OM_REPLAY_WINDOW);
	assert_int_equal(om_replay_check(&r, 5 + OM_REPLAY_WINDOW), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, 5), OM_EREPLAY); /* too old */
	for (c = 6; c < 5 + OM_REPLAY_WINDOW; c++)
		assert_int_equal(om_replay_check(&r, c), 0);
	/* A small step clears exactly the slots it passes. */
	om_replay_commit(&r, 100);
	om_replay_commit(&r, 6 + OM_REPLAY_WINDOW + 50);
	assert_int_equal(om_replay_check(&r, 100), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, 5 + OM_REPLAY_WINDOW), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, 6 + OM_REPLAY_WINDOW + 50), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, 6 + OM_REPLAY_WINDOW + 49), 0);
	assert_int_equal(om_replay_check(&r, 55), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, 57), 0);
	/* A huge jump. */
	om_replay_commit(&r, UINT64_MAX - 1);
	assert_int_equal(r.top, UINT64_MAX);
	assert_int_equal(om_replay_check(&r, UINT64_MAX - 1), OM_EREPLAY);
	assert_int_equal(om_replay_check(&r, UINT64_MAX - 2), 0);
	assert_int_equal(om_replay_check(&r, UINT64_MAX - OM_REPLAY_WINDOW), 0);
	assert_int_equal(om_replay_check(&r, UINT64_MAX - OM_REPLAY_WINDOW - 1), OM_EREPLAY);
}

static void
test_peek(void **state)
{
	uint8_t f[17] = {'D', 1, 2, 3, 4, 5, 6, 7, 8};
	uint8_t type = 0;
	uint64_t sid = 0;
	size_t n;

	(void)state;
	assert_int_equal(om_frame_peek(f, 17, &type, &sid), 0);
	assert_int_equal(type, 'D');
	assert_int_equal(sid, UINT64_C(0x0102030405060708));
	for (n = 0; n < 17; n++)
		assert_int_equal(om_frame_peek(f, n, &type, &sid), OM_EPROTO);
	f[0] = 'h';
	assert_int_equal(om_frame_peek(f, 9, &type, &sid), 0);
	assert_int_equal(type, 'h');
	assert_int_equal(om_frame_peek(f, 8, NULL, NULL), OM_EPROTO);
	f[0] = 'R';
	assert_int_equal(om_frame_peek(f, 9, &type, &sid), 0);
	assert_int_equal(type, OM_FRAME_RESET);
	assert_int_equal(sid, UINT64_C(0x0102030405060708));
	assert_int_equal(om_frame_peek(f, 8, &type, &sid), OM_EPROTO);
	f[0] = 'H';
	assert_int_equal(om_frame_peek(f, 2, &type, &sid), OM_EPROTO);
	assert_int_equal(om_frame_peek(f, 3, &type, &sid), 0);
	assert_int_equal(sid, 0);
	f[0] = 'x';
	assert_int_equal(om_frame_peek(f, 17, &type, &sid), OM_EPROTO);
}

static void
test_keyfile(void **state)
{
	char dir[] = "/tmp/om_chan_test.XXXXXX", path[256], fp[65], fp2[65], want[65];
	struct om_keypair a, b;
	struct stat st;
	uint8_t *data, md[32];
	unsigned int mdlen;
	size_t len;
	bool created = false;
	FILE *fh;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/master.key", dir);
	assert_int_equal(om_key_load(path, &a), OM_ENOTFOUND);

	assert_int_equal(om_key_load_or_create(path, &a, &created), 0);
	assert_true(created);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(om_read_file(path, 1024, &data, &len), 0);
	assert_int_equal(len, 65);
	assert_int_equal(data[64], '\n');
	om_free(data);

	assert_int_equal(om_key_load(path, &b), 0);
	assert_memory_equal(a.priv, b.priv, 32);
	assert_memory_equal(a.pub, b.pub, 32);
	assert_int_equal(om_key_load_or_create(path, &b, &created), 0);
	assert_false(created);
	assert_memory_equal(a.pub, b.pub, 32);

	/* Fingerprint: hex SHA-256 of the public key. */
	om_key_fingerprint(a.pub, fp);
	assert_int_equal(strlen(fp), 64);
	assert_int_equal(EVP_Digest(a.pub, 32, md, &mdlen, EVP_sha256(), NULL), 1);
	om_hex_encode(md, 32, want);
	assert_string_equal(fp, want);
	om_key_fingerprint(other.pub, fp2);
	assert_string_not_equal(fp, fp2);

	/* Group- or world-readable key files are refused. */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(om_key_load(path, &b), OM_EPERM);
	assert_int_equal(om_key_load_or_create(path, &b, &created), OM_EPERM);
	assert_false(created);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(om_key_load(path, &b), OM_EPERM);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(om_key_load(path, &b), 0);

	/* Malformed contents. */
	assert_int_equal(unlink(path), 0);
	fh = fopen(path, "w");
	assert_non_null(fh);
	fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeefz\n", fh);
	fclose(fh);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(om_key_load(path, &b), OM_EINVAL);
	fh = fopen(path, "w");
	fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", fh);
	fclose(fh);
	assert_int_equal(om_key_load(path, &b), 0); /* the newline is optional */
	fh = fopen(path, "w");
	fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\n", fh);
	fclose(fh);
	assert_int_equal(om_key_load(path, &b), OM_EINVAL);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ik),
	        cmocka_unit_test(test_nk),
	        cmocka_unit_test(test_pattern_policy),
	        cmocka_unit_test(test_wrong_master),
	        cmocka_unit_test(test_hs_bounds),
	        cmocka_unit_test(test_hs_tamper),
	        cmocka_unit_test(test_replay),
	        cmocka_unit_test(test_reorder),
	        cmocka_unit_test(test_window_edge),
	        cmocka_unit_test(test_truncated),
	        cmocka_unit_test(test_bitflips),
	        cmocka_unit_test(test_wrong_sid),
	        cmocka_unit_test(test_forged_counter),
	        cmocka_unit_test(test_buffer_limits),
	        cmocka_unit_test(test_replay_unit),
	        cmocka_unit_test(test_peek),
	        cmocka_unit_test(test_keyfile),
	};

	return cmocka_run_group_tests_name("chan", tests, group_setup, NULL);
}
