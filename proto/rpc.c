/*
 * RPC over nng with the secure channel.  See om/rpc.h for the contract.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <openssl/rand.h>

#include "om/rpc.h"

/*
 * nng's REQ never re-sends a request by itself: with a resend time it would
 * send it again on a new connection, maybe to another master, after the
 * first had processed it.  Without one, a closed connection fails the call.
 */
#define REQ_RESEND_MS NNG_DURATION_INFINITE

/* Session limits: the client rekeys at its limits, the server enforces twice them. */
#define REKEY_MESSAGES_DEFAULT  (UINT64_C(1) << 20)
#define REKEY_AGE_MS_DEFAULT    (3600 * 1000)
#define SESSION_IDLE_MS_DEFAULT (120 * 1000)
#define HS_RATE_DEFAULT         20
#define HS_BURST_DEFAULT        40
#define PREAUTH_MS_DEFAULT      (10 * 1000)
#define HS_KEYLEN               9    /* family + IPv4 address or IPv6 /64 */
#define HS_BUCKETS              1024 /* hash chains */
#define HS_TABLE_MAX            4096 /* source addresses remembered */
#define HS_LOG_EVERY_MS         10000

static int
nng_to_om(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ETIMEDOUT:
		return OM_ETIMEDOUT;
	case NNG_ECLOSED:
	case NNG_ECONNSHUT:
	case NNG_ECONNRESET:
		return OM_ECLOSED;
	case NNG_ENOMEM:
		return OM_ENOMEM;
	case NNG_EMSGSIZE:
		return OM_EMSGSIZE;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return OM_EINVAL;
	default:
		return OM_ETRANSPORT;
	}
}

/* ================================ client ================================ */

struct om_rpc_client {
	nng_socket sock;
	nng_dialer dialer; /* to urls[cur]; valid when have_dialer */
	bool have_dialer;
	char *urls[OM_RPC_MAX_URLS]; /* owned copies */
	size_t nurls;
	struct om_rpc_client_opts opts;
	struct om_keypair local; /* copy: opts.local points here */
	struct om_buf hello;     /* encoded HELLO/AUTH */
	pthread_mutex_t lock;    /* guards everything below and the handshake */
	struct om_chan chan;     /* the current session */
	bool have_chan;
	uint64_t generation; /* bumps at every new session */
	unsigned inflight;   /* calls sealed on chan and not finished */
	/*
	 * The session a rekey (or a failure) retired while calls sealed on it
	 * were in flight: their replies still open with it.  Without it a
	 * request the master did process would be retried on the new session
	 * and run twice.  Wiped as soon as the last of those calls finishes.
	 */
	struct om_chan prev;
	bool have_prev;
	uint64_t prev_generation;
	unsigned prev_inflight;
	bool shut; /* om_rpc_client_shutdown was called */
	/*
	 * Written with lock and plock held, read with either: nng's pipe
	 * callbacks and om_rpc_client_url take only plock, so they never wait
	 * for a handshake.
	 */
	pthread_mutex_t plock;
	size_t cur;          /* index of the URL dialed now */
	int dialer_id;       /* nng id of that dialer, 0: none */
	uint64_t dial_epoch; /* bumps at every new dialer */
	int pipe_id;         /* its connection (nng pipe) now, 0: none */
};

/* nng pipe callback (nng threads, no nng lock held): is the current dialer connected? */
static void
client_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct om_rpc_client *c = arg;
	int did = nng_dialer_id(nng_pipe_dialer(p));

	pthread_mutex_lock(&c->plock);
	/* A closed dialer's pipes may go after the next dialer's came. */
	if (did > 0 && did == c->dialer_id) {
		if (ev == NNG_PIPE_EV_ADD_POST)
			c->pipe_id = nng_pipe_id(p);
		else if (ev == NNG_PIPE_EV_REM_POST && c->pipe_id == nng_pipe_id(p))
			c->pipe_id = 0;
	}
	pthread_mutex_unlock(&c->plock);
}

/* Copies the URLs of one list entry ("u1,u2"); OM_EINVAL for an empty or bad one. */
static int
client_add_urls(struct om_rpc_client *c, const char *list)
{
	const char *p = list;

	if (list == NULL)
		return OM_EINVAL;
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		nng_url *u = NULL;
		char *url;

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0 || c->nurls == OM_RPC_MAX_URLS)
			return OM_EINVAL;
		if ((url = om_malloc(len + 1)) == NULL)
			return OM_ENOMEM;
		memcpy(url, p, len);
		url[len] = '\0';
		c->urls[c->nurls++] = url;
		/* Checked now: found bad at a failover, it would leave no dialer. */
		if (nng_url_parse(&u, url) != 0)
			return OM_EINVAL;
		nng_url_free(u);
		if (end == NULL)
			return 0;
		p = end + 1;
	}
}

/* Starts a dialer to urls[cur] (caller holds lock, or owns the client alone). */
static int
client_dial(struct om_rpc_client *c)
{
	nng_dialer d;
	int rv;

	if ((rv = nng_dialer_create(&d, c->sock, c->urls[c->cur])) != 0)
		return nng_to_om(rv);
	nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 100);
	nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 2000);
	nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, OM_MAX_FRAME + 64);
	/* Before it starts: its first pipe must count. */
	pthread_mutex_lock(&c->plock);
	c->dialer_id = nng_dialer_id(d);
	c->pipe_id = 0;
	c->dial_epoch++;
	pthread_mutex_unlock(&c->plock);
	/* Non-blocking: a master that is down now may be up at the next retry. */
	if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
		nng_dialer_close(d);
		return nng_to_om(rv);
	}
	c->dialer = d;
	c->have_dialer = true;
	return 0;
}

static void
client_free_urls(struct om_rpc_client *c)
{
	size_t i;

	for (i = 0; i < c->nurls; i++)
		om_free(c->urls[i]);
	c->nurls = 0;
}

int
om_rpc_client_open(struct om_rpc_client **out, const struct om_rpc_client_opts *opts)
{
	struct om_rpc_client *c;
	size_t i;
	int rv;

	if ((c = om_calloc(1, sizeof(*c))) == NULL)
		return OM_ENOMEM;
	c->opts = *opts;
	if (opts->nurls == 0)
		rv = client_add_urls(c, opts->url);
	else
		for (i = 0, rv = 0; i < opts->nurls && rv == 0; i++)
			rv = client_add_urls(c, opts->urls[i]);
	if (rv != 0) {
		client_free_urls(c);
		om_free(c);
		return rv;
	}
	c->opts.url = c->urls[0];
	c->opts.urls = NULL;
	c->opts.nurls = 0;
	if (opts->local != NULL) {
		c->local = *opts->local;
		c->opts.local = &c->local;
	}
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 5000;
	if (c->opts.rekey_messages == 0)
		c->opts.rekey_messages = REKEY_MESSAGES_DEFAULT;
	if (c->opts.rekey_age_ms <= 0)
		c->opts.rekey_age_ms = REKEY_AGE_MS_DEFAULT;
	om_buf_init(&c->hello, OM_CHAN_MAX_HS_PAYLOAD);
	if (opts->hello == NULL)
		rv = opts->hello_raw ? om_buf_append(&c->hello, opts->hello_raw, opts->hello_raw_len)
		                     : OM_EINVAL;
	else
		rv = om_msg_encode(opts->hello, &c->hello);
	if (rv != 0 || c->hello.err) {
		om_buf_release(&c->hello);
		client_free_urls(c);
		om_free(c);
		return rv ? rv : c->hello.err;
	}
	c->opts.hello = NULL;
	c->opts.hello_raw = NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->plock, NULL);
	if ((rv = nng_req0_open(&c->sock)) != 0) {
		rv = nng_to_om(rv);
		goto fail;
	}
	/* The default receive limit is unlimited: any peer could make us allocate. */
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, OM_MAX_FRAME + 64);
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, REQ_RESEND_MS);
	if ((rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, client_pipe_event, c)) != 0 ||
	    (rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, client_pipe_event, c)) != 0) {
		nng_close(c->sock);
		rv = nng_to_om(rv);
		goto fail;
	}
	if ((rv = client_dial(c)) != 0) {
		nng_close(c->sock);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->plock);
	om_buf_release(&c->hello);
	client_free_urls(c);
	om_free(c);
	return rv;
}

const char *
om_rpc_client_url(struct om_rpc_client *c)
{
	const char *url;

	pthread_mutex_lock(&c->plock);
	url = c->urls[c->cur];
	pthread_mutex_unlock(&c->plock);
	return url;
}

void
om_rpc_client_shutdown(struct om_rpc_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (!c->shut) {
		c->shut = true;
		/* Closing the socket aborts every context's pending aio with NNG_ECLOSED. */
		nng_close(c->sock);
	}
	pthread_mutex_unlock(&c->lock);
}

void
om_rpc_client_close(struct om_rpc_client *c)
{
	if (c == NULL)
		return;
	/* Returns once its pipes are gone: no pipe callback runs after it. */
	if (!c->shut)
		nng_close(c->sock);
	om_chan_wipe(&c->chan);
	om_chan_wipe(&c->prev);
	om_wipe(&c->local, sizeof(c->local));
	om_buf_release(&c->hello);
	client_free_urls(c);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->plock);
	om_free(c);
}

/*
 * One request/reply exchange of raw frames on a fresh context.  The request
 * waits for a connection at most connect_timeout_ms at a time: with several
 * URLs, when the current dialer still has none by then, it is given up (never
 * sent) with OM_ETIMEDOUT and *dead_epoch set to that dialer's epoch, so the
 * caller can leave that master.  Otherwise *dead_epoch stays 0.
 */
static int
client_exchange(struct om_rpc_client *c, const uint8_t *frame, size_t n, nng_msg **reply,
                int timeout_ms, uint64_t *dead_epoch)
{
	nng_ctx ctx;
	nng_aio *aio = NULL;
	nng_msg *m = NULL;
	int64_t deadline = om_now_ms() + timeout_ms;
	uint64_t epoch;
	int rv;

	*reply = NULL;
	*dead_epoch = 0;
	pthread_mutex_lock(&c->plock);
	epoch = c->dial_epoch;
	pthread_mutex_unlock(&c->plock);
	if ((rv = nng_ctx_open(&ctx, c->sock)) != 0)
		return nng_to_om(rv);
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0)
		goto out;
	if ((rv = nng_msg_alloc(&m, 0)) != 0 || (rv = nng_msg_append(m, frame, n)) != 0)
		goto out;
	for (;;) {
		int64_t left = deadline - om_now_ms();
		bool connected;
		uint64_t now_epoch;

		if (left <= 0) {
			rv = NNG_ETIMEDOUT;
			goto out;
		}
		/* REQ completes a send once a connection took the request. */
		if (c->nurls > 1 && left > c->opts.connect_timeout_ms)
			left = c->opts.connect_timeout_ms;
		nng_aio_set_timeout(aio, (nng_duration)left);
		nng_aio_set_msg(aio, m);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) != NNG_ETIMEDOUT)
			break;
		/* Timed out unsent: m is ours again. */
		pthread_mutex_lock(&c->plock);
		connected = c->pipe_id != 0;
		now_epoch = c->dial_epoch;
		pthread_mutex_unlock(&c->plock);
		if (!connected && now_epoch == epoch && c->nurls > 1) {
			*dead_epoch = epoch;
			goto out;
		}
		epoch = now_epoch; /* connected but busy, or another thread moved on: wait on */
	}
	if (rv != 0)
		goto out; /* m is still ours */
	m = NULL;
	nng_aio_set_timeout(aio, timeout_ms);
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) == 0)
		*reply = nng_aio_get_msg(aio);
out:
	if (m != NULL)
		nng_msg_free(m);
	if (aio != NULL)
		nng_aio_free(aio);
	nng_ctx_close(ctx);
	return nng_to_om(rv);
}

/*
 * Ends the current session (caller holds c->lock).  Its keys move to prev
 * while calls sealed on it are still waiting for their replies.
 */
static void
client_retire(struct om_rpc_client *c)
{
	if (!c->have_chan)
		return;
	c->have_chan = false;
	if (c->inflight > 0) {
		/* A call still waiting on an older prev loses it: at worst it retries. */
		om_chan_wipe(&c->prev);
		c->prev = c->chan;
		c->have_prev = true;
		c->prev_generation = c->generation;
		c->prev_inflight = c->inflight;
	}
	c->inflight = 0;
	om_chan_wipe(&c->chan);
}

/* A call sealed in generation gen finished (caller holds c->lock). */
static void
client_call_done(struct om_rpc_client *c, uint64_t gen)
{
	if (c->have_chan && c->generation == gen) {
		if (c->inflight > 0)
			c->inflight--;
	} else if (c->have_prev && c->prev_generation == gen) {
		if (c->prev_inflight > 0)
			c->prev_inflight--;
		if (c->prev_inflight == 0) {
			om_chan_wipe(&c->prev);
			c->have_prev = false;
		}
	}
}

/*
 * Leaves the master of dialer epoch (0: whichever is current) for the next
 * URL, unless another thread moved on already (caller holds c->lock).  The
 * session goes with it; calls in flight on its connection fail.  If the new
 * dialer cannot start, there is none: handshakes time out and move on again.
 */
static void
client_failover(struct om_rpc_client *c, uint64_t epoch)
{
	bool current;

	if (c->nurls < 2 || c->shut)
		return;
	pthread_mutex_lock(&c->plock);
	current = epoch == 0 || epoch == c->dial_epoch;
	pthread_mutex_unlock(&c->plock);
	if (!current)
		return;
	client_retire(c);
	if (c->have_dialer)
		nng_dialer_close(c->dialer);
	c->have_dialer = false;
	pthread_mutex_lock(&c->plock);
	c->cur = (c->cur + 1) % c->nurls;
	c->dialer_id = 0;
	c->pipe_id = 0;
	pthread_mutex_unlock(&c->plock);
	(void)client_dial(c);
}

void
om_rpc_client_failover(struct om_rpc_client *c)
{
	pthread_mutex_lock(&c->lock);
	client_failover(c, 0);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Caller holds c->lock.  On success the new session replaces the current one.
 * *ans (zeroed by the caller) receives the master's answer on success and on
 * OM_EAUTH; caller releases it.
 */
static int
client_handshake(struct om_rpc_client *c, struct om_msg *ans)
{
	struct om_noise_hs *hs = NULL;
	struct om_buf frame;
	struct om_chan nc;
	uint8_t payload[OM_CHAN_MAX_HS_PAYLOAD];
	size_t plen = 0;
	nng_msg *reply = NULL;
	uint64_t dead = 0;
	int rv;

	memset(&nc, 0, sizeof(nc));
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	rv = om_chan_initiate(c->opts.pattern, c->opts.local, c->opts.master_pub, c->hello.data,
	                      c->hello.len, &hs, &frame);
	if (rv == 0)
		rv = client_exchange(c, frame.data, frame.len, &reply, c->opts.connect_timeout_ms,
		                     &dead);
	if (rv == 0)
		rv = om_chan_complete(hs, nng_msg_body(reply), nng_msg_len(reply), &nc, payload,
		                      sizeof(payload), &plen);
	if (rv == 0)
		rv = om_msg_decode(payload, plen, ans);
	if (rv == 0 && ans->type == OM_MSG_ERROR) {
		rv = OM_EAUTH; /* the master refused us: no session */
	} else if (rv == 0) {
		client_retire(c);
		c->chan = nc;
		c->have_chan = true;
		c->generation++;
		c->inflight = 0;
	}
	om_chan_wipe(&nc);
	if (rv != 0 && rv != OM_EAUTH)
		om_msg_release(ans);
	om_wipe(payload, sizeof(payload));
	if (reply != NULL)
		nng_msg_free(reply);
	om_noise_hs_free(hs);
	om_buf_release(&frame);
	return rv;
}

/* A handshake that failed so that another master may do better. */
static bool
client_try_next(const struct om_rpc_client *c, int rv, const struct om_msg *ans)
{
	if (c->shut)
		return false;
	if (rv == OM_EAUTH)
		return ans->type == OM_MSG_ERROR && ans->u.error.code == OM_EDB;
	return rv == OM_ETIMEDOUT || rv == OM_ETRANSPORT || rv == OM_ECLOSED;
}

/*
 * Handshakes with the current master, moving to the next after each one that
 * does not answer or cannot serve: each URL at most once (caller holds
 * c->lock).  *welcome (may be NULL) as for om_rpc_connect.  rekey: a new
 * session replacing a worn one, which on_connect does not hear about unless
 * it landed on another master.
 */
static int
client_connect_any(struct om_rpc_client *c, struct om_msg *welcome, bool rekey)
{
	struct om_msg ans;
	uint64_t epoch;
	size_t i;
	int rv = 0;

	pthread_mutex_lock(&c->plock);
	epoch = c->dial_epoch;
	pthread_mutex_unlock(&c->plock);
	for (i = 0; i < c->nurls; i++) {
		memset(&ans, 0, sizeof(ans));
		rv = client_handshake(c, &ans);
		if (rv == 0 || !client_try_next(c, rv, &ans))
			break;
		om_msg_release(&ans);
		client_failover(c, 0);
	}
	if (rv == 0 && c->opts.on_connect != NULL) {
		bool moved;
		pthread_mutex_lock(&c->plock);
		moved = epoch != c->dial_epoch;
		pthread_mutex_unlock(&c->plock);
		if (!rekey || moved)
			c->opts.on_connect(c->opts.on_connect_arg, c->urls[c->cur]);
	}
	if (welcome != NULL && (rv == 0 || rv == OM_EAUTH))
		*welcome = ans;
	else
		om_msg_release(&ans);
	return rv;
}

int
om_rpc_connect(struct om_rpc_client *c, struct om_msg *welcome)
{
	int rv = 0;

	if (welcome != NULL)
		memset(welcome, 0, sizeof(*welcome));
	pthread_mutex_lock(&c->lock);
	if (c->shut)
		rv = OM_ECLOSED;
	else if (!c->have_chan)
		rv = client_connect_any(c, welcome, false);
	pthread_mutex_unlock(&c->lock);
	return rv;
}

/* Drops the session, unless another thread already replaced it (caller holds c->lock). */
static void
client_reset(struct om_rpc_client *c, uint64_t generation)
{
	if (c->generation == generation)
		client_retire(c);
}

/* Caller holds c->lock and has a session. */
static bool
client_rekey_due(const struct om_rpc_client *c)
{
	return c->chan.tx_ctr >= c->opts.rekey_messages ||
	       om_now_ms() - c->chan.established_ms >= c->opts.rekey_age_ms;
}

static int
client_call_once(struct om_rpc_client *c, const struct om_buf *pt, struct om_msg *rep,
                 int timeout_ms)
{
	struct om_buf frame, plain;
	struct om_chan *ch = NULL;
	nng_msg *reply = NULL;
	uint64_t gen = 0, sid = 0, dead = 0;
	uint8_t type = 0;
	bool sealed = false;
	int rv = 0;

	om_buf_init(&frame, OM_MAX_FRAME + 64);
	om_buf_init(&plain, OM_MAX_FRAME);
	pthread_mutex_lock(&c->lock);
	if (c->shut) {
		rv = OM_ECLOSED;
	} else if (c->have_chan && client_rekey_due(c)) {
		/*
		 * A fresh handshake, fresh ephemeral keys: what this session's
		 * keys protected stays safe if a later one leaks.  If it fails,
		 * the worn session is not used again either.
		 */
		om_debug("rekeying session %016llx after %llu frames",
		         (unsigned long long)c->chan.sid, (unsigned long long)c->chan.tx_ctr);
		if ((rv = client_connect_any(c, NULL, true)) != 0)
			client_retire(c);
	}
	if (rv == 0 && !c->have_chan)
		rv = client_connect_any(c, NULL, false);
	gen = c->generation;
	if (rv == 0 && (rv = om_chan_seal(&c->chan, pt->data, pt->len, &frame)) == 0) {
		sealed = true;
		c->inflight++;
	}
	pthread_mutex_unlock(&c->lock);
	if (rv != 0)
		goto out;
	if ((rv = client_exchange(c, frame.data, frame.len, &reply, timeout_ms, &dead)) != 0) {
		/* The request may or may not have been seen: a new session is the safe state. */
		pthread_mutex_lock(&c->lock);
		client_reset(c, gen);
		if (dead != 0) {
			/* Never sent, no connection to its master: retry on the next one. */
			client_failover(c, dead);
			rv = OM_ESESSION;
		}
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	if (om_frame_peek(nng_msg_body(reply), nng_msg_len(reply), &type, &sid) == 0 &&
	    type == OM_FRAME_RESET) {
		uint64_t sent = 0;
		int i;
		for (i = 0; i < 8; i++)
			sent = sent << 8 | frame.data[1 + i];
		/* Only a reset for the session we used may make us retry. */
		if (sid == sent) {
			client_reset(c, gen);
			rv = OM_ESESSION;
		} else {
			rv = OM_EPROTO;
		}
	} else {
		if (c->have_chan && c->generation == gen)
			ch = &c->chan;
		else if (c->have_prev && c->prev_generation == gen)
			ch = &c->prev; /* sealed before a rekey: the reply is in the old keys */
		if (ch == NULL)
			/* The reply came but its keys are gone: the request may have run,
			 * so this must not look like a reset (which retries). */
			rv = OM_ETRANSPORT;
		else if ((rv = om_chan_open(ch, nng_msg_body(reply), nng_msg_len(reply), &plain)) !=
		         0)
			client_reset(c, gen);
	}
	pthread_mutex_unlock(&c->lock);
	if (rv == 0)
		rv = om_msg_decode(plain.data, plain.len, rep);
out:
	if (sealed) {
		pthread_mutex_lock(&c->lock);
		client_call_done(c, gen);
		pthread_mutex_unlock(&c->lock);
	}
	if (reply != NULL)
		nng_msg_free(reply);
	om_buf_release(&frame);
	om_buf_release(&plain);
	return rv;
}

int
om_rpc_call_raw(struct om_rpc_client *c, const uint8_t *pt, size_t n, struct om_msg *rep,
                int timeout_ms)
{
	struct om_buf b;
	int rv;

	memset(rep, 0, sizeof(*rep));
	om_buf_init(&b, OM_MAX_FRAME - 64);
	if ((rv = om_buf_append(&b, pt, n)) == 0) {
		rv = client_call_once(c, &b, rep, timeout_ms);
		if (rv == OM_ESESSION)
			rv = client_call_once(c, &b, rep, timeout_ms);
	}
	om_buf_release(&b);
	return rv;
}

int
om_rpc_call(struct om_rpc_client *c, const struct om_msg *req, struct om_msg *rep, int timeout_ms)
{
	struct om_buf pt;
	int rv;

	memset(rep, 0, sizeof(*rep));
	om_buf_init(&pt, OM_MAX_FRAME - 64);
	if ((rv = om_msg_encode(req, &pt)) == 0 && (rv = pt.err) == 0) {
		rv = client_call_once(c, &pt, rep, timeout_ms);
		/* A reset means the master never processed the request: retrying is safe. */
		if (rv == OM_ESESSION)
			rv = client_call_once(c, &pt, rep, timeout_ms);
	}
	om_buf_release(&pt);
	return rv;
}

/* ================================ server ================================ */

enum work_state { W_RECV, W_QUEUED, W_OWNED, W_SEND };

struct om_rpc_work {
	struct om_rpc_server *srv;
	nng_aio *aio;
	nng_ctx ctx;
	enum work_state state;
	nng_msg *msg;             /* the request frame while queued/owned */
	struct om_rpc_work *next; /* queue link */
	struct om_rpc_req req;    /* handed to the owner */
};

struct om_rpc_session {
	struct om_chan chan;
	void *user;
	int64_t last_ms;
	uint64_t nrecv; /* frames opened: the hard message limit counts these */
	uint32_t pipe_id; /* the connection its last authentic frame came on */
	struct om_rpc_session *next;
};

/*
 * One connection (nng pipe).  Added and removed by nng's pipe callbacks on
 * nng threads, read and marked by the owner: guarded by plock.
 */
struct pipe_rec {
	uint32_t id;
	int64_t connect_ms;
	int64_t last_ms; /* last authentic frame (or the connect) */
	bool authed;     /* accepted a handshake or opened a DATA frame */
	bool closing;    /* the owner asked nng to close it */
	bool busy;       /* scratch for om_rpc_server_expire */
	char peer[64];
	struct pipe_rec *next;
};

#define PIPE_BUCKETS 256
#define SEND_TIMEOUT_MS 2000 /* a reply the peer does not take in time is dropped */
#define CLOSED_RING 256 /* a lost notice only delays the owner's own timeouts */

/* A handshake token bucket for one source address; owner thread only. */
struct hs_bucket {
	uint8_t key[HS_KEYLEN];
	int64_t tokens; /* thousandths of a handshake */
	int64_t refill_ms;
	int64_t logged_ms; /* last "over the limit" log line, 0: never */
	struct hs_bucket *hnext;
	struct hs_bucket *newer, *older; /* recency list */
};

struct om_rpc_server {
	struct om_rpc_server_opts opts;
	struct om_keypair key;
	nng_socket sock;
	struct om_rpc_work *works;
	unsigned nworks;
	pthread_mutex_t qlock; /* guards the queue and closing: nng threads touch them */
	struct om_rpc_work *qhead, *qtail;
	bool closing;
	struct om_rpc_session *sessions; /* owner thread only */
	pthread_mutex_t plock;           /* guards the pipe table; taken after qlock */
	struct pipe_rec *pipes[PIPE_BUCKETS];
	unsigned npipes;
	uint32_t closed[CLOSED_RING]; /* authenticated connections gone since the last expire */
	unsigned nclosed;
	/* Handshake rate limiting: owner thread only. */
	struct hs_bucket *hs_table[HS_BUCKETS];
	struct hs_bucket *hs_newest, *hs_oldest;
	unsigned nhs;
	uint64_t hs_seed; /* keys the hash so peers cannot aim at one chain */
};

/* ---- connections ---- */

static void
pipe_peer_name(nng_pipe p, char *out, size_t n)
{
	nng_sockaddr sa;
	char ip[INET6_ADDRSTRLEN] = "?";

	snprintf(out, n, "unknown peer");
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
		snprintf(out, n, "%s:%u", ip, ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
		snprintf(out, n, "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
	}
}

/* Caller holds plock. */
static struct pipe_rec **
pipe_slot(struct om_rpc_server *s, uint32_t id)
{
	struct pipe_rec **pp = &s->pipes[id % PIPE_BUCKETS];

	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

/* nng thread: a connection finished nng's own negotiation, or went away. */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct om_rpc_server *s = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	struct pipe_rec *pr, **pp;

	if (ev == NNG_PIPE_EV_ADD_POST) {
		if ((pr = om_calloc(1, sizeof(*pr))) == NULL) {
			/* Untracked, it would escape the timeouts: refuse it instead. */
			nng_pipe_close(p);
			return;
		}
		pr->id = id;
		pr->connect_ms = pr->last_ms = om_now_ms();
		pipe_peer_name(p, pr->peer, sizeof(pr->peer));
		pthread_mutex_lock(&s->plock);
		pp = pipe_slot(s, id);
		if (*pp == NULL) {
			*pp = pr;
			s->npipes++;
			pr = NULL;
		}
		pthread_mutex_unlock(&s->plock);
		om_free(pr);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		pthread_mutex_lock(&s->plock);
		pp = pipe_slot(s, id);
		if ((pr = *pp) != NULL) {
			*pp = pr->next;
			s->npipes--;
			if (pr->authed && s->nclosed < CLOSED_RING)
				s->closed[s->nclosed++] = id;
		}
		pthread_mutex_unlock(&s->plock);
		om_free(pr);
	}
}

/* Owner: a frame on pipe p was authentic; authed when it proved a session. */
static void
pipe_touch(struct om_rpc_server *s, nng_pipe p, bool authed)
{
	struct pipe_rec *pr;

	pthread_mutex_lock(&s->plock);
	if ((pr = *pipe_slot(s, (uint32_t)nng_pipe_id(p))) != NULL) {
		pr->last_ms = om_now_ms();
		if (authed)
			pr->authed = true;
	}
	pthread_mutex_unlock(&s->plock);
}

/* Owner: closes connections past the pre-authentication or idle timeout. */
static void
pipes_expire(struct om_rpc_server *s)
{
	int64_t now = om_now_ms();
	uint32_t *ids = NULL;
	unsigned i, n = 0;
	struct pipe_rec *pr;

	pthread_mutex_lock(&s->qlock);
	pthread_mutex_lock(&s->plock);
	/* A connection with a request queued or held is waiting on us, not idle. */
	for (i = 0; i < s->nworks; i++) {
		struct om_rpc_work *w = &s->works[i];
		if ((w->state == W_QUEUED || w->state == W_OWNED) && w->msg != NULL &&
		    (pr = *pipe_slot(s, (uint32_t)nng_pipe_id(nng_msg_get_pipe(w->msg)))) != NULL)
			pr->busy = true;
	}
	if (s->npipes > 0)
		ids = om_calloc(s->npipes, sizeof(*ids));
	for (i = 0; i < PIPE_BUCKETS; i++) {
		for (pr = s->pipes[i]; pr != NULL; pr = pr->next) {
			const char *why = NULL;
			if (pr->closing) {
				/* asked already; nng removes it */
			} else if (!pr->authed &&
			           now - pr->connect_ms > s->opts.preauth_timeout_ms) {
				why = "not authenticated in time";
			} else if (pr->authed && !pr->busy &&
			           now - pr->last_ms > s->opts.idle_timeout_ms) {
				why = "idle";
			}
			pr->busy = false;
			if (why != NULL && ids != NULL && n < s->npipes) {
				/* An idle peer is normal (its dialer comes back when needed). */
				om_log(pr->authed ? OM_LOG_DEBUG : OM_LOG_INFO,
				       "%s endpoint: closing connection from %s: %s", s->opts.name,
				       pr->peer, why);
				pr->closing = true;
				ids[n++] = pr->id;
			}
		}
	}
	pthread_mutex_unlock(&s->plock);
	pthread_mutex_unlock(&s->qlock);
	/* Outside the locks: nng runs our REM_POST callback, which takes plock. */
	for (i = 0; i < n; i++) {
		nng_pipe p = NNG_PIPE_INITIALIZER;
		p.id = ids[i];
		nng_pipe_close(p);
	}
	om_free(ids);
}

/* ---- handshake rate limiting ---- */

/*
 * The bucket key: an IPv4 address, or the /64 of an IPv6 address (one host
 * usually holds a whole /64, so per-address buckets would be free to
 * multiply).  Other transports share one bucket.
 */
static void
hs_key(nng_pipe p, uint8_t key[HS_KEYLEN])
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	nng_sockaddr sa;

	memset(key, 0, HS_KEYLEN);
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &sa.s_in.sa_addr, 4);
	} else if (sa.s_family == NNG_AF_INET6 &&
	           memcmp(sa.s_in6.sa_addr, v4mapped, sizeof(v4mapped)) == 0) {
		key[0] = 4;
		memcpy(key + 1, sa.s_in6.sa_addr + 12, 4);
	} else if (sa.s_family == NNG_AF_INET6) {
		key[0] = 6;
		memcpy(key + 1, sa.s_in6.sa_addr, 8);
	}
}

static unsigned
hs_hash(const struct om_rpc_server *s, const uint8_t key[HS_KEYLEN])
{
	uint64_t h = s->hs_seed ^ UINT64_C(14695981039346656037);
	unsigned i;

	for (i = 0; i < HS_KEYLEN; i++) {
		h ^= key[i];
		h *= UINT64_C(1099511628211);
	}
	h ^= h >> 29;
	return (unsigned)(h % HS_BUCKETS);
}

static void
hs_unlink(struct om_rpc_server *s, struct hs_bucket *b)
{
	if (b->newer != NULL)
		b->newer->older = b->older;
	else
		s->hs_newest = b->older;
	if (b->older != NULL)
		b->older->newer = b->newer;
	else
		s->hs_oldest = b->newer;
	b->newer = b->older = NULL;
}

static void
hs_push_newest(struct om_rpc_server *s, struct hs_bucket *b)
{
	b->older = s->hs_newest;
	b->newer = NULL;
	if (s->hs_newest != NULL)
		s->hs_newest->newer = b;
	s->hs_newest = b;
	if (s->hs_oldest == NULL)
		s->hs_oldest = b;
}

/* Removes the least recently used bucket: the table stays bounded. */
static void
hs_evict_oldest(struct om_rpc_server *s)
{
	struct hs_bucket *b = s->hs_oldest, **pp;

	if (b == NULL)
		return;
	hs_unlink(s, b);
	for (pp = &s->hs_table[hs_hash(s, b->key)]; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == b) {
			*pp = b->hnext;
			break;
		}
	}
	s->nhs--;
	om_free(b);
}

/*
 * Takes one handshake token for the connection's source address.  False:
 * over the limit, drop the frame.  Runs before any crypto, so a flood
 * costs a hash lookup per frame.
 */
static bool
hs_allow(struct om_rpc_server *s, nng_pipe p, const char *peer)
{
	const int64_t cap = (int64_t)s->opts.hs_burst * 1000;
	uint8_t key[HS_KEYLEN];
	struct hs_bucket *b;
	int64_t now = om_now_ms();
	unsigned h;

	hs_key(p, key);
	h = hs_hash(s, key);
	for (b = s->hs_table[h]; b != NULL; b = b->hnext)
		if (memcmp(b->key, key, HS_KEYLEN) == 0)
			break;
	if (b == NULL) {
		if (s->nhs >= HS_TABLE_MAX)
			hs_evict_oldest(s);
		/* No memory for a bucket: admit, as before there was a limiter. */
		if ((b = om_calloc(1, sizeof(*b))) == NULL)
			return true;
		memcpy(b->key, key, HS_KEYLEN);
		b->tokens = cap;
		b->refill_ms = now;
		b->hnext = s->hs_table[h];
		s->hs_table[h] = b;
		s->nhs++;
	} else {
		hs_unlink(s, b);
	}
	hs_push_newest(s, b);
	if (now > b->refill_ms) {
		/* rate tokens a second is rate thousandths a millisecond. */
		int64_t dt = now - b->refill_ms, rate = (int64_t)s->opts.hs_rate;
		if (dt >= cap / rate + 1) /* also keeps dt * rate from overflowing */
			b->tokens = cap;
		else
			b->tokens = dt * rate >= cap - b->tokens ? cap : b->tokens + dt * rate;
		b->refill_ms = now;
	}
	if (b->tokens >= 1000) {
		b->tokens -= 1000;
		return true;
	}
	if (b->logged_ms == 0 || now - b->logged_ms >= HS_LOG_EVERY_MS) {
		om_warn("%s endpoint: handshakes from %s over the rate limit (%u/s, burst %u): "
		        "dropping them",
		        s->opts.name, peer, s->opts.hs_rate, s->opts.hs_burst);
		b->logged_ms = now;
		if (s->opts.on_refused != NULL)
			s->opts.on_refused(s->opts.refused_arg, peer, "handshake rate limit exceeded");
	}
	return false;
}

static void
pipes_free_all(struct om_rpc_server *s)
{
	struct pipe_rec *pr;
	unsigned i;

	for (i = 0; i < PIPE_BUCKETS; i++) {
		while ((pr = s->pipes[i]) != NULL) {
			s->pipes[i] = pr->next;
			om_free(pr);
		}
	}
	s->npipes = 0;
}

static void
hs_free_all(struct om_rpc_server *s)
{
	while (s->hs_oldest != NULL)
		hs_evict_oldest(s);
}

static void
work_recv(struct om_rpc_work *w)
{
	w->state = W_RECV;
	w->msg = NULL;
	nng_aio_set_timeout(w->aio, NNG_DURATION_DEFAULT); /* waiting for requests is our job */
	nng_ctx_recv(w->ctx, w->aio);
}

static void
work_cb(void *arg)
{
	struct om_rpc_work *w = arg;
	struct om_rpc_server *s = w->srv;
	int rv = nng_aio_result(w->aio);

	if (w->state == W_SEND) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(w->aio));
		pthread_mutex_lock(&s->qlock);
		if (!s->closing)
			work_recv(w);
		pthread_mutex_unlock(&s->qlock);
		return;
	}
	if (rv != 0) {
		pthread_mutex_lock(&s->qlock);
		/* NNG_ECLOSED at shutdown; anything else: keep serving. */
		if (!s->closing && rv != NNG_ECLOSED)
			work_recv(w);
		pthread_mutex_unlock(&s->qlock);
		return;
	}
	pthread_mutex_lock(&s->qlock);
	w->msg = nng_aio_get_msg(w->aio);
	w->state = W_QUEUED;
	w->next = NULL;
	if (s->qtail)
		s->qtail->next = w;
	else
		s->qhead = w;
	s->qtail = w;
	pthread_mutex_unlock(&s->qlock);
	if (s->opts.wake)
		s->opts.wake(s->opts.wake_arg);
}

int
om_rpc_server_open(struct om_rpc_server **out, const struct om_rpc_server_opts *opts)
{
	struct om_rpc_server *s;
	unsigned i;
	int rv;

	if ((s = om_calloc(1, sizeof(*s))) == NULL)
		return OM_ENOMEM;
	s->opts = *opts;
	s->key = *opts->key;
	s->opts.key = &s->key;
	s->nworks = opts->nctx ? opts->nctx : 64;
	if (s->opts.max_frame == 0)
		s->opts.max_frame = OM_MAX_FRAME + 64;
	if (s->opts.session_idle_ms <= 0)
		s->opts.session_idle_ms = SESSION_IDLE_MS_DEFAULT;
	if (s->opts.max_session_age_ms <= 0)
		s->opts.max_session_age_ms = 2 * (int64_t)REKEY_AGE_MS_DEFAULT;
	if (s->opts.max_session_messages == 0)
		s->opts.max_session_messages = 2 * REKEY_MESSAGES_DEFAULT;
	if (s->opts.hs_rate == 0)
		s->opts.hs_rate = HS_RATE_DEFAULT;
	if (s->opts.hs_burst == 0)
		s->opts.hs_burst = HS_BURST_DEFAULT;
	if (s->opts.preauth_timeout_ms <= 0)
		s->opts.preauth_timeout_ms = PREAUTH_MS_DEFAULT;
	if (s->opts.idle_timeout_ms <= 0)
		s->opts.idle_timeout_ms = s->opts.session_idle_ms;
	if (s->opts.name == NULL)
		s->opts.name = "rpc";
	pthread_mutex_init(&s->qlock, NULL);
	pthread_mutex_init(&s->plock, NULL);
	if (RAND_bytes((unsigned char *)&s->hs_seed, sizeof(s->hs_seed)) != 1) {
		rv = NNG_EINTERNAL;
		goto fail;
	}
	if ((s->works = om_calloc(s->nworks, sizeof(*s->works))) == NULL) {
		rv = NNG_ENOMEM;
		goto fail;
	}
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		goto fail;
	/*
	 * nng 1.5.2 has one receive cap per socket, applied before we see a
	 * frame: it must be the post-authentication one.  The smaller
	 * pre-authentication cap is checked per frame in work_process.
	 */
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->opts.max_frame);
	/* Before listening, so that no connection escapes the timeouts. */
	if ((rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, pipe_event, s)) != 0 ||
	    (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, pipe_event, s)) != 0)
		goto fail_sock;
	for (i = 0; i < s->nworks; i++) {
		struct om_rpc_work *w = &s->works[i];
		w->srv = s;
		w->req.work_ = w;
		if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, s->sock)) != 0)
			goto fail_sock;
	}
	if ((rv = nng_listen(s->sock, opts->url, NULL, 0)) != 0)
		goto fail_sock;
	for (i = 0; i < s->nworks; i++)
		work_recv(&s->works[i]);
	*out = s;
	return 0;
fail_sock:
	nng_close(s->sock);
	for (i = 0; i < s->nworks; i++)
		if (s->works[i].aio)
			nng_aio_free(s->works[i].aio);
fail:
	pipes_free_all(s);
	om_free(s->works);
	pthread_mutex_destroy(&s->qlock);
	pthread_mutex_destroy(&s->plock);
	om_free(s);
	return rv == NNG_EADDRINUSE ? OM_EEXIST : nng_to_om(rv);
}

static void
session_free(struct om_rpc_session *ss)
{
	om_chan_wipe(&ss->chan);
	om_free(ss);
}

static void
req_clear(struct om_rpc_req *r)
{
	om_msg_release(&r->msg);
	if (r->hs_ != NULL) {
		om_noise_hs_free(r->hs_);
		r->hs_ = NULL;
	}
	r->session = NULL;
}

void
om_rpc_server_close(struct om_rpc_server *s)
{
	struct om_rpc_session *ss, *next;
	unsigned i;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->qlock);
	s->closing = true;
	pthread_mutex_unlock(&s->qlock);
	nng_close(s->sock);
	for (i = 0; i < s->nworks; i++) {
		struct om_rpc_work *w = &s->works[i];
		nng_aio_stop(w->aio);
		if ((w->state == W_QUEUED || w->state == W_OWNED) && w->msg != NULL)
			nng_msg_free(w->msg);
		req_clear(&w->req);
		nng_aio_free(w->aio);
	}
	for (ss = s->sessions; ss != NULL; ss = next) {
		next = ss->next;
		session_free(ss);
	}
	/* nng_close ran every REM_POST callback; whatever is left is ours alone. */
	pipes_free_all(s);
	hs_free_all(s);
	om_wipe(&s->key, sizeof(s->key));
	om_free(s->works);
	pthread_mutex_destroy(&s->qlock);
	pthread_mutex_destroy(&s->plock);
	om_free(s);
}

/* Sends raw bytes as the reply of w; on failure w goes back to receiving. */
static int
work_send(struct om_rpc_work *w, const uint8_t *data, size_t n)
{
	nng_msg *m = w->msg;
	int rv;

	w->msg = NULL;
	nng_msg_clear(m);
	if ((rv = nng_msg_append(m, data, n)) != 0) {
		nng_msg_free(m);
		work_recv(w);
		return nng_to_om(rv);
	}
	w->state = W_SEND;
	nng_aio_set_msg(w->aio, m);
	/* A peer that never reads must not keep this context from serving others. */
	nng_aio_set_timeout(w->aio, SEND_TIMEOUT_MS);
	nng_ctx_send(w->ctx, w->aio);
	return 0;
}

/* Answers nothing, keeps the connection, and goes back to receiving. */
static void
work_ignore(struct om_rpc_work *w)
{
	if (w->msg != NULL) {
		nng_msg_free(w->msg);
		w->msg = NULL;
	}
	req_clear(&w->req);
	work_recv(w);
}

/*
 * Answers with a reset frame for sid: the peer handshakes again and retries.
 * Unauthenticated, so all it can make a peer do is exactly that.
 */
static void
work_reset(struct om_rpc_work *w, const uint8_t *sid_be)
{
	uint8_t reset[9] = {OM_FRAME_RESET};

	memcpy(reset + 1, sid_be, 8);
	req_clear(&w->req);
	work_send(w, reset, sizeof(reset));
}

/* Closes the peer's pipe and goes back to receiving. */
static void
work_drop(struct om_rpc_work *w, const char *why)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;

	om_warn("%s endpoint: dropping %s: %s", w->srv->opts.name, w->req.peer, why);
	if (w->srv->opts.on_refused != NULL)
		w->srv->opts.on_refused(w->srv->opts.refused_arg, w->req.peer, why);
	if (w->msg != NULL) {
		p = nng_msg_get_pipe(w->msg);
		nng_msg_free(w->msg);
		w->msg = NULL;
	}
	req_clear(&w->req);
	work_recv(w);
	if (nng_pipe_id(p) > 0)
		nng_pipe_close(p);
}

static struct om_rpc_session *
session_find(struct om_rpc_server *s, uint64_t sid)
{
	struct om_rpc_session *ss;

	for (ss = s->sessions; ss != NULL; ss = ss->next)
		if (ss->chan.sid == sid)
			return ss;
	return NULL;
}

/* Returns true when w became a request for the owner. */
static bool
work_process(struct om_rpc_server *s, struct om_rpc_work *w)
{
	struct om_rpc_req *r = &w->req;
	const uint8_t *data = nng_msg_body(w->msg);
	size_t n = nng_msg_len(w->msg);
	nng_pipe pipe = nng_msg_get_pipe(w->msg);
	uint8_t type = 0, payload[OM_CHAN_MAX_HS_PAYLOAD];
	uint64_t sid = 0;
	size_t plen = 0;
	struct om_rpc_session *ss;
	struct om_buf pt;
	int64_t now;
	int rv;

	memset(r, 0, sizeof(*r));
	r->work_ = w;
	pipe_peer_name(pipe, r->peer, sizeof(r->peer));
	if ((rv = om_frame_peek(data, n, &type, &sid)) != 0) {
		work_drop(w, om_strerror(rv));
		return false;
	}
	if (type == OM_FRAME_HS1) {
		enum om_noise_pattern pat;
		/* The pre-authentication cap, before anything else reads the frame. */
		if (n > OM_MAX_FRAME_PREAUTH) {
			work_drop(w, "handshake frame too large");
			return false;
		}
		/* Before the DH: a flood must cost us no more than this lookup. */
		if (!hs_allow(s, pipe, r->peer)) {
			work_ignore(w);
			return false;
		}
		rv = om_chan_accept(&s->key, s->opts.patterns, data, n, &pat, &r->hs_, payload,
		                    sizeof(payload), &plen);
		if (rv == 0 && (rv = om_msg_decode(payload, plen, &r->msg)) != 0) {
			/*
			 * The handshake itself was sound, only its payload is not a
			 * message we know: say so (encrypted to the peer's ephemeral
			 * key) rather than leave it waiting for a timeout.
			 */
			om_wipe(payload, sizeof(payload));
			om_warn("%s endpoint: refusing %s: malformed handshake payload (%s)",
			        s->opts.name, r->peer, om_strerror(rv));
			if (s->opts.on_refused != NULL)
				s->opts.on_refused(s->opts.refused_arg, r->peer,
				                   "malformed handshake payload");
			om_rpc_refuse(r, OM_EPROTO, "malformed handshake payload");
			return false;
		}
		om_wipe(payload, sizeof(payload));
		if (rv != 0) {
			char why[96];
			snprintf(why, sizeof(why), "handshake failed: %s", om_strerror(rv));
			work_drop(w, why);
			return false;
		}
		/* Activity, not yet authentication: the owner may still refuse. */
		pipe_touch(s, pipe, false);
		r->kind = OM_RPC_HANDSHAKE;
		r->pattern = pat;
		if (pat == OM_NOISE_IK) {
			const uint8_t *rs = om_noise_hs_remote_static(r->hs_);
			if (rs != NULL)
				memcpy(r->remote_static, rs, OM_NOISE_KEYLEN);
		}
		return true;
	}
	if (type != OM_FRAME_DATA) {
		work_drop(w, "unexpected frame type");
		return false;
	}
	if ((ss = session_find(s, sid)) == NULL) {
		/* Unknown session (expired, or we restarted): handshake again. */
		om_debug("%s endpoint: unknown session from %s", s->opts.name, r->peer);
		work_reset(w, data + 1);
		return false;
	}
	now = om_now_ms();
	if (now - ss->chan.established_ms > s->opts.max_session_age_ms ||
	    ss->nrecv >= s->opts.max_session_messages) {
		/*
		 * Past the hard limit the client should have rekeyed before:
		 * refuse the session, unread; om_rpc_server_expire ends it.
		 */
		om_debug("%s endpoint: session %016llx from %s past its age or message limit",
		         s->opts.name, (unsigned long long)sid, r->peer);
		work_reset(w, data + 1);
		return false;
	}
	om_buf_init(&pt, OM_MAX_FRAME);
	rv = om_chan_open(&ss->chan, data, n, &pt);
	if (rv == OM_EREPLAY) {
		/*
		 * A duplicate, or a counter older than the window.  nng's REQ
		 * re-sends on reconnect, so this is not proof of an attack: ignore
		 * it, never answer twice, keep the connection.
		 */
		om_warn("%s endpoint: replayed or stale record from %s ignored", s->opts.name,
		        r->peer);
		if (s->opts.on_refused != NULL)
			s->opts.on_refused(s->opts.refused_arg, r->peer, "replayed or stale record");
		om_buf_release(&pt);
		work_ignore(w);
		return false;
	}
	if (rv == 0) {
		/* Authentic: the session and the connection live on, even if it fails to decode. */
		ss->nrecv++;
		ss->last_ms = now;
		ss->pipe_id = (uint32_t)nng_pipe_id(pipe);
		pipe_touch(s, pipe, true);
		if (om_msg_decode(pt.data, pt.len, &r->msg) != 0) {
			/*
			 * Authentic but not a message we know (an unknown type, a
			 * malformed one): the owner refuses it like any operation it
			 * does not permit, in the session, so the peer learns why.
			 */
			memset(&r->msg, 0, sizeof(r->msg));
			r->msg.type = OM_MSG_NONE;
		}
	}
	om_buf_release(&pt);
	if (rv != 0) {
		char why[96];
		snprintf(why, sizeof(why), "bad record: %s", om_strerror(rv));
		work_drop(w, why);
		return false;
	}
	r->session = ss;
	r->kind = OM_RPC_REQUEST;
	return true;
}

struct om_rpc_req *
om_rpc_server_take(struct om_rpc_server *s)
{
	struct om_rpc_work *w;

	for (;;) {
		pthread_mutex_lock(&s->qlock);
		if ((w = s->qhead) != NULL) {
			s->qhead = w->next;
			if (s->qhead == NULL)
				s->qtail = NULL;
			w->state = W_OWNED;
		}
		pthread_mutex_unlock(&s->qlock);
		if (w == NULL)
			return NULL;
		if (work_process(s, w))
			return &w->req;
	}
}

int
om_rpc_accept(struct om_rpc_req *r, const struct om_msg *reply, void *user,
              struct om_rpc_session **session)
{
	struct om_rpc_work *w = r->work_;
	struct om_rpc_server *s = w->srv;
	struct om_rpc_session *ss;
	struct om_buf payload, frame;
	uint64_t sid;
	int rv;

	if ((ss = om_calloc(1, sizeof(*ss))) == NULL) {
		work_drop(w, "out of memory");
		return OM_ENOMEM;
	}
	do {
		if (RAND_bytes((unsigned char *)&sid, sizeof(sid)) != 1) {
			om_free(ss);
			work_drop(w, "no randomness");
			return OM_ESYS;
		}
	} while (sid == 0 || session_find(s, sid) != NULL);
	om_buf_init(&payload, OM_CHAN_MAX_HS_PAYLOAD);
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	rv = om_msg_encode(reply, &payload);
	if (rv == 0 && (rv = payload.err) == 0)
		rv = om_chan_respond(r->hs_, sid, payload.data, payload.len, &ss->chan, &frame);
	if (rv == 0 && (rv = frame.err) == 0) {
		pipe_touch(s, nng_msg_get_pipe(w->msg), true);
		ss->pipe_id = (uint32_t)nng_pipe_id(nng_msg_get_pipe(w->msg));
		ss->user = user;
		ss->last_ms = om_now_ms();
		ss->next = s->sessions;
		s->sessions = ss;
		if (session != NULL)
			*session = ss;
		req_clear(r);
		work_send(w, frame.data, frame.len);
	} else {
		session_free(ss);
		work_drop(w, "cannot answer handshake");
	}
	om_buf_release(&payload);
	om_buf_release(&frame);
	return rv;
}

void
om_rpc_refuse(struct om_rpc_req *r, int code, const char *text)
{
	struct om_rpc_work *w = r->work_;
	struct om_msg err = {.type = OM_MSG_ERROR};
	struct om_chan tmp;
	struct om_buf payload, frame;

	err.u.error.code = code;
	err.u.error.text = (char *)text;
	om_buf_init(&payload, OM_CHAN_MAX_HS_PAYLOAD);
	om_buf_init(&frame, OM_MAX_FRAME_PREAUTH);
	memset(&tmp, 0, sizeof(tmp));
	/* The refusal travels encrypted inside message 2; the keys are thrown away. */
	if (om_msg_encode(&err, &payload) == 0 && payload.err == 0 &&
	    om_chan_respond(r->hs_, 0, payload.data, payload.len, &tmp, &frame) == 0 &&
	    frame.err == 0) {
		req_clear(r);
		work_send(w, frame.data, frame.len);
	} else {
		work_drop(w, "cannot answer handshake");
	}
	om_chan_wipe(&tmp);
	om_buf_release(&payload);
	om_buf_release(&frame);
}

/* ---- local requests ---- */

struct om_rpc_local {
	struct om_rpc_req req;
	pthread_mutex_t lock; /* guards everything below; held during a callback */
	unsigned refs;        /* the creator's and the finisher's */
	bool cancelled;       /* the creator let go: no callback any more */
	bool finished;        /* replied or dropped */
	void (*on_reply)(void *arg, const struct om_msg *reply);
	void (*on_drop)(void *arg, const char *why);
	void *arg;
};

static void
local_unref(struct om_rpc_local *l)
{
	bool last;

	pthread_mutex_lock(&l->lock);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->lock);
	if (last) {
		om_msg_release(&l->req.msg);
		pthread_mutex_destroy(&l->lock);
		om_free(l);
	}
}

struct om_rpc_req *
om_rpc_local_new(const struct om_msg *msg, void (*on_reply)(void *arg, const struct om_msg *reply),
                 void (*on_drop)(void *arg, const char *why), void *arg, const char *peer)
{
	struct om_rpc_local *l;
	struct om_buf b;

	if ((l = om_calloc(1, sizeof(*l))) == NULL)
		return NULL;
	if (msg != NULL) {
		/* A deep copy through the codec: the owner gets exactly what an nng
		 * request would give it, limits checked the same way. */
		om_buf_init(&b, OM_MAX_FRAME);
		if (om_msg_encode(msg, &b) != 0 || b.err != 0 ||
		    om_msg_decode(b.data, b.len, &l->req.msg) != 0) {
			om_buf_release(&b);
			om_free(l);
			return NULL;
		}
		om_buf_release(&b);
	}
	pthread_mutex_init(&l->lock, NULL);
	l->refs = 2;
	l->on_reply = on_reply;
	l->on_drop = on_drop;
	l->arg = arg;
	l->req.kind = OM_RPC_REQUEST;
	l->req.local_ = l;
	snprintf(l->req.peer, sizeof(l->req.peer), "%s", peer ? peer : "local");
	return &l->req;
}

/* The finisher's side: one callback unless cancelled, then its reference goes. */
static void
local_finish(struct om_rpc_req *r, const struct om_msg *reply, const char *why)
{
	struct om_rpc_local *l = r->local_;

	pthread_mutex_lock(&l->lock);
	if (!l->finished && !l->cancelled) {
		if (reply != NULL && l->on_reply != NULL)
			l->on_reply(l->arg, reply);
		else if (reply == NULL && l->on_drop != NULL)
			l->on_drop(l->arg, why ? why : "dropped");
	}
	l->finished = true;
	pthread_mutex_unlock(&l->lock);
	om_msg_release(&r->msg);
	local_unref(l);
}

void
om_rpc_local_release(struct om_rpc_req *r)
{
	struct om_rpc_local *l;

	if (r == NULL || (l = r->local_) == NULL)
		return;
	pthread_mutex_lock(&l->lock); /* waits for a callback in progress */
	l->cancelled = true;
	pthread_mutex_unlock(&l->lock);
	local_unref(l);
}

bool
om_rpc_local_cancelled(struct om_rpc_req *r)
{
	struct om_rpc_local *l = r->local_;
	bool c;

	if (l == NULL)
		return false;
	pthread_mutex_lock(&l->lock);
	c = l->cancelled;
	pthread_mutex_unlock(&l->lock);
	return c;
}

bool
om_rpc_is_local(const struct om_rpc_req *r)
{
	return r->local_ != NULL;
}

int
om_rpc_reply(struct om_rpc_req *r, const struct om_msg *reply)
{
	struct om_rpc_work *w = r->work_;
	struct om_buf pt, frame;
	int rv;

	if (r->local_ != NULL) {
		local_finish(r, reply, NULL);
		return 0;
	}
	om_buf_init(&pt, OM_MAX_FRAME - 64);
	om_buf_init(&frame, OM_MAX_FRAME + 64);
	rv = om_msg_encode(reply, &pt);
	if (rv == 0 && (rv = pt.err) == 0 && r->session != NULL)
		rv = om_chan_seal(&r->session->chan, pt.data, pt.len, &frame);
	else if (rv == 0)
		rv = OM_ESESSION;
	if (rv == 0 && (rv = frame.err) == 0) {
		req_clear(r);
		rv = work_send(w, frame.data, frame.len);
	} else {
		work_drop(w, "cannot encode reply");
	}
	om_buf_release(&pt);
	om_buf_release(&frame);
	return rv;
}

void
om_rpc_drop(struct om_rpc_req *r, const char *why)
{
	if (r->local_ != NULL) {
		local_finish(r, NULL, why);
		return;
	}
	work_drop(r->work_, why);
}

void *
om_rpc_session_user(const struct om_rpc_session *ss)
{
	return ss->user;
}

uint64_t
om_rpc_session_id(const struct om_rpc_session *ss)
{
	return ss->chan.sid;
}

void
om_rpc_session_end(struct om_rpc_server *s, struct om_rpc_session *ss)
{
	struct om_rpc_session **pp;

	for (pp = &s->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ss) {
			*pp = ss->next;
			session_free(ss);
			return;
		}
	}
}

void
om_rpc_server_expire(struct om_rpc_server *s, void (*on_end)(void *arg, void *user), void *arg)
{
	struct om_rpc_session **pp = &s->sessions, *ss;
	int64_t now = om_now_ms();
	uint32_t closed[CLOSED_RING];
	unsigned nclosed, i;

	/* Sessions whose connection closed: the owner may stop counting on them. */
	pthread_mutex_lock(&s->plock);
	nclosed = s->nclosed;
	memcpy(closed, s->closed, nclosed * sizeof(closed[0]));
	s->nclosed = 0;
	pthread_mutex_unlock(&s->plock);
	if (s->opts.on_disconnect != NULL)
		for (ss = s->sessions; ss != NULL; ss = ss->next)
			for (i = 0; i < nclosed; i++)
				if (ss->pipe_id == closed[i])
					s->opts.on_disconnect(s->opts.refused_arg, ss->user);
	while ((ss = *pp) != NULL) {
		if (now - ss->last_ms > s->opts.session_idle_ms ||
		    now - ss->chan.established_ms > s->opts.max_session_age_ms ||
		    ss->nrecv >= s->opts.max_session_messages) {
			if (on_end != NULL)
				on_end(arg, ss->user);
			*pp = ss->next;
			session_free(ss);
		} else {
			pp = &ss->next;
		}
	}
	pipes_expire(s);
}
