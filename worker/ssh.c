/*
 * The worker's SSH engine (see ssh.h): one epoll loop in the calling thread
 * drives up to opts->concurrency host state machines over non-blocking
 * libssh2 sessions.
 *
 * A host occupies a slot from its start to its done callback.  Every libssh2
 * call is repeated until it returns LIBSSH2_ERROR_EAGAIN, then the slot waits
 * for the socket direction libssh2_session_block_directions names.  Each
 * step of a slot therefore ends either finished or blocked on the socket.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh2.h>

#include "om/base.h"
#include "om/err.h"
#include "om/msg.h"
#include "ssh.h"

#define SSH_READ_BUF          16384 /* one read into the output callback */
#define SSH_READ_BUDGET       16  /* reads per stream per step: a chatty host can't starve others */
#define SSH_TICK_MS           100 /* longest sleep: the cancel flag is polled this often */
#define SSH_MAX_EVENTS        64
#define SSH_CONNECT_TIMEOUT_S 10 /* connect_timeout_s 0 */
#define SSH_REASON_MAX        512

enum ssh_phase {
	PH_FREE,       /* slot unused */
	PH_CONNECT,    /* non-blocking TCP connect in progress */
	PH_HANDSHAKE,  /* SSH banner, key exchange; host key checked at its end */
	PH_AUTH,       /* publickey userauth */
	PH_CHOPEN,     /* opening the session channel */
	PH_EXEC,       /* exec request */
	PH_READ,       /* streaming stdout and stderr until EOF */
	PH_CLOSE,      /* channel close sent, waiting for the remote close */
	PH_WAITCLOSED, /* until the exit status is in */
};

struct ssh_host {
	enum ssh_phase phase;
	size_t idx; /* index into the caller's hosts[] */
	const struct om_ssh_target *t;
	int fd;         /* -1 when none */
	uint32_t armed; /* epoll events registered for fd */
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *ch;
	struct addrinfo *ai_list; /* resolved addresses, freed at teardown */
	struct addrinfo *ai;      /* the address being tried */
	int conn_err;             /* errno of the last failed connect, for the message */
	int64_t t0;               /* start, om_now_ms */
	int64_t deadline;         /* whole run; 0: none */
	int64_t conn_deadline;    /* connect to end of auth; 0 once authenticated */
	bool more;                /* output left unread after the read budget: step again now */
	bool stepped;             /* stepped in this loop iteration */
};

struct ssh_run {
	const struct om_ssh_opts *opts;
	const struct om_ssh_target *hosts;
	size_t n;
	size_t next; /* first host not started yet */
	const char *command;
	const volatile int *cancel;
	const struct om_ssh_cb *cb;
	unsigned connect_timeout_s;
	int ep; /* epoll fd */
	/*
	 * known_hosts, parsed once for the whole run.  libssh2 ties a
	 * LIBSSH2_KNOWNHOSTS to a session only for allocation and error
	 * reporting, so this unconnected session owns it and every host's check
	 * uses it (all on this thread).
	 */
	LIBSSH2_SESSION *kh_session;
	LIBSSH2_KNOWNHOSTS *kh;
	struct ssh_host *slots;
	size_t nslots;
	size_t active; /* slots not PH_FREE */
	uint8_t buf[SSH_READ_BUF];
};

static bool
run_cancelled(const struct ssh_run *r)
{
	return r->cancel != NULL && *r->cancel != 0;
}

/* "addr:port", or "[addr]:port" for IPv6, as ssh and known_hosts write it. */
static void
host_where(const struct om_ssh_target *t, char *out, size_t len)
{
	unsigned port = t->port ? t->port : 22;

	if (strchr(t->addr, ':') != NULL)
		snprintf(out, len, "[%s]:%u", t->addr, port);
	else
		snprintf(out, len, "%s:%u", t->addr, port);
}

/* The known_hosts spelling of a host: plain for port 22, "[host]:port" otherwise. */
static void
kh_name(const char *host, unsigned port, char *out, size_t len)
{
	if (port == 22)
		snprintf(out, len, "%s", host);
	else
		snprintf(out, len, "[%s]:%u", host, port);
}

static const char *
errno_text(int err, char *buf, size_t len)
{
	return strerror_r(err, buf, len); /* GNU: returns the text, maybe not in buf */
}

static const char *
session_error(LIBSSH2_SESSION *s)
{
	char *msg = NULL;

	if (s == NULL)
		return "no session";
	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg != NULL && *msg != '\0' ? msg : "unknown error";
}

/*
 * Frees everything the slot holds without ever blocking.  When the command
 * did not finish cleanly (timeout, cancel, failure) the socket is shut down
 * first: libssh2_channel_free would otherwise send CLOSE and wait for the
 * remote CLOSE, which never comes while the remote command runs, and
 * libssh2_session_free returns EAGAIN (freeing nothing) while a channel is
 * still open.  On a dead socket every libssh2 call fails at once instead.
 */
static void
host_teardown(struct ssh_run *r, struct ssh_host *h, bool graceful)
{
	if (h->fd >= 0)
		epoll_ctl(r->ep, EPOLL_CTL_DEL, h->fd, NULL);
	if (h->s != NULL) {
		if (!graceful && h->fd >= 0)
			shutdown(h->fd, SHUT_RDWR);
		if (h->ch != NULL)
			libssh2_channel_free(h->ch);
		/* One try: a DISCONNECT that doesn't fit the socket buffer isn't worth a wait. */
		if (graceful)
			libssh2_session_disconnect(h->s, "done");
		if (libssh2_session_free(h->s) == LIBSSH2_ERROR_EAGAIN) {
			/* Only with a channel left open; make sure nothing can block and retry. */
			shutdown(h->fd, SHUT_RDWR);
			libssh2_session_free(h->s);
		}
	}
	if (h->fd >= 0)
		close(h->fd);
	if (h->ai_list != NULL)
		freeaddrinfo(h->ai_list);
	h->s = NULL;
	h->ch = NULL;
	h->fd = -1;
	h->ai_list = NULL;
	h->ai = NULL;
}

/* Bytes from the remote (signal names, libssh2 messages) go to a person: printable ASCII only. */
static void
sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Ends a host: frees the slot and makes its one done callback. */
static void host_finish(struct ssh_run *r, struct ssh_host *h, int state, int exit_code,
                        bool graceful, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void
host_finish(struct ssh_run *r, struct ssh_host *h, int state, int exit_code, bool graceful,
            const char *fmt, ...)
{
	char reason[SSH_REASON_MAX];
	int64_t dur = om_now_ms() - h->t0;
	size_t idx = h->idx;
	va_list ap;

	reason[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(reason, sizeof reason, fmt, ap);
		va_end(ap);
		sanitize(reason);
	}
	host_teardown(r, h, graceful);
	h->phase = PH_FREE;
	h->more = false;
	r->active--;
	r->cb->done(r->cb->arg, idx, state, exit_code, fmt != NULL ? reason : NULL,
	            dur > 0 ? (uint64_t)dur : 0);
}

/* Tries the addresses left in h->ai until a connect is under way; fails the host when none is. */
static void
host_connect(struct ssh_run *r, struct ssh_host *h)
{
	char where[300], ebuf[128];
	struct epoll_event ev;
	int one = 1;

	for (; h->ai != NULL; h->ai = h->ai->ai_next) {
		int fd = socket(h->ai->ai_family, h->ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                h->ai->ai_protocol);

		if (fd < 0) {
			h->conn_err = errno;
			continue;
		}
		/* SSH exchanges many small packets; Nagle would add a delay to each round trip. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, h->ai->ai_addr, h->ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			h->conn_err = errno;
			close(fd);
			continue;
		}
		/* Even a connect that completed at once goes through EPOLLOUT and SO_ERROR. */
		ev.events = EPOLLOUT;
		ev.data.u64 = (uint64_t)(h - r->slots);
		if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			h->conn_err = errno;
			close(fd);
			continue;
		}
		h->fd = fd;
		h->armed = EPOLLOUT;
		h->phase = PH_CONNECT;
		return;
	}
	host_where(h->t, where, sizeof where);
	host_finish(r, h, OM_HS_UNREACHABLE, -1, false, "connect to %s: %s", where,
	            h->conn_err ? errno_text(h->conn_err, ebuf, sizeof ebuf) : "no usable address");
}

static void
host_start(struct ssh_run *r, struct ssh_host *h, size_t idx)
{
	const struct om_ssh_target *t = &r->hosts[idx];
	struct addrinfo hints;
	char port[8], ebuf[128];
	int rc;

	memset(h, 0, sizeof *h);
	h->idx = idx;
	h->t = t;
	h->fd = -1;
	h->t0 = om_now_ms();
	h->conn_deadline = h->t0 + (int64_t)r->connect_timeout_s * 1000;
	if (r->opts->timeout_s > 0)
		h->deadline = h->t0 + (int64_t)r->opts->timeout_s * 1000;
	h->phase = PH_CONNECT; /* counted as active from here; host_finish undoes it */
	r->active++;

	if (t->addr == NULL || t->addr[0] == '\0' || t->user == NULL || t->user[0] == '\0') {
		host_finish(r, h, OM_HS_FAILED, -1, false,
		            "invalid target: address and user required");
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof port, "%u", t->port ? t->port : 22);
	/* Blocks for a DNS name; numeric addresses, the common case, return at once. */
	rc = getaddrinfo(t->addr, port, &hints, &h->ai_list);
	if (rc != 0) {
		h->ai_list = NULL;
		host_finish(r, h, OM_HS_UNREACHABLE, -1, false, "cannot resolve '%s': %s", t->addr,
		            rc == EAI_SYSTEM ? errno_text(errno, ebuf, sizeof ebuf)
		                             : gai_strerror(rc));
		return;
	}
	h->ai = h->ai_list;
	host_connect(r, h);
}

static int
kh_keytype(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	default:
		return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/*
 * One known_hosts lookup.  libssh2_knownhost_checkp with a port also falls
 * back to the plain host name, so an entry for port 22 would vouch for any
 * port; OpenSSH looks only at "[host]:port" for a non-22 port, and so do we,
 * by building that name ourselves and using the port-less check.
 */
static int
kh_check(struct ssh_run *r, const char *host, unsigned port, const char *key, size_t len, int type)
{
	char name[300];

	kh_name(host, port, name, sizeof name);
	return libssh2_knownhost_check(r->kh, name, key, len,
	                               LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                       kh_keytype(type),
	                               NULL);
}

/* 0 when the server's host key matches known_hosts; otherwise the host is finished. */
static int
host_check_key(struct ssh_run *r, struct ssh_host *h)
{
	const struct om_ssh_target *t = h->t;
	unsigned port = t->port ? t->port : 22;
	char where[300];
	const char *key;
	size_t len = 0;
	int type = 0, rc;

	host_where(t, where, sizeof where);
	key = libssh2_session_hostkey(h->s, &len, &type);
	if (key == NULL) {
		host_finish(r, h, OM_HS_FAILED, -1, false,
		            "host key verification failed: %s sent no host key", where);
		return -1;
	}
	rc = kh_check(r, t->addr, port, key, len, type);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && t->name != NULL && t->name[0] != '\0' &&
	    strcmp(t->name, t->addr) != 0)
		rc = kh_check(r, t->name, port, key, len, type);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		return 0;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		host_finish(
		        r, h, OM_HS_FAILED, -1, false,
		        "host key verification failed: the key of %s does not match known_hosts "
		        "(possible man-in-the-middle)",
		        where);
		return -1;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		host_finish(r, h, OM_HS_FAILED, -1, false,
		            "host key verification failed: %s is not in known_hosts", where);
		return -1;
	default:
		host_finish(r, h, OM_HS_FAILED, -1, false, "host key verification failed: %s: %s",
		            where, session_error(r->kh_session));
		return -1;
	}
}

/* After the channel closed cleanly: the exit signal or status decides the state. */
static void
host_exit(struct ssh_run *r, struct ssh_host *h)
{
	char *sig = NULL;
	size_t siglen = 0;
	int status;

	libssh2_channel_get_exit_signal(h->ch, &sig, &siglen, NULL, NULL, NULL, NULL);
	if (sig != NULL) {
		char name[32];

		snprintf(name, sizeof name, "%.*s", (int)(siglen < 31 ? siglen : 31), sig);
		libssh2_free(h->s, sig);
		host_finish(r, h, OM_HS_FAILED, -1, true, "killed by signal %s", name);
		return;
	}
	status = libssh2_channel_get_exit_status(h->ch);
	if (status == 0)
		host_finish(r, h, OM_HS_OK, 0, true, NULL);
	else
		host_finish(r, h, OM_HS_FAILED, status, true, "exit status %d", status);
}

/*
 * Drains both streams (an unread stderr stalls the channel window, so both
 * are read on every wakeup).  Returns 1 to go on to close, 0 to wait, -1
 * when the host was finished.
 */
static int
host_read(struct ssh_run *r, struct ssh_host *h)
{
	ssize_t n1 = 0, n2 = 0;
	int i;

	h->more = false;
	for (i = 0; i < SSH_READ_BUDGET; i++) {
		/* A callback may set the cancel flag: check after each; the caller acts on it. */
		n1 = libssh2_channel_read(h->ch, (char *)r->buf, sizeof r->buf);
		if (n1 > 0) {
			r->cb->output(r->cb->arg, h->idx, 1, r->buf, (size_t)n1);
			if (run_cancelled(r))
				return 1;
		}
		n2 = libssh2_channel_read_stderr(h->ch, (char *)r->buf, sizeof r->buf);
		if (n2 > 0) {
			r->cb->output(r->cb->arg, h->idx, 2, r->buf, (size_t)n2);
			if (run_cancelled(r))
				return 1;
		}
		if (n1 <= 0 && n2 <= 0)
			break;
	}
	if ((n1 < 0 && n1 != LIBSSH2_ERROR_EAGAIN) || (n2 < 0 && n2 != LIBSSH2_ERROR_EAGAIN)) {
		char where[300];

		host_where(h->t, where, sizeof where);
		host_finish(r, h, OM_HS_FAILED, -1, false,
		            "connection to %s lost while the command ran: %s", where,
		            session_error(h->s));
		return -1;
	}
	if (n1 > 0 || n2 > 0) {
		/* Budget spent; libssh2 may hold the rest already, with no socket event to come. */
		h->more = true;
		return 0;
	}
	if (libssh2_channel_eof(h->ch))
		return 1;
	/*
	 * 0 from both reads without EOF: the channel closed without EOF or the
	 * transport broke.  Closing either completes or reports the error.
	 */
	if (n1 == 0 && n2 == 0)
		return 1;
	return 0;
}

/* Advances one host as far as it goes without blocking. */
static void
host_step(struct ssh_run *r, struct ssh_host *h, uint32_t events)
{
	char where[300];
	int rc, err;
	socklen_t elen;

	for (;;) {
		if (h->phase == PH_FREE)
			return;
		if (run_cancelled(r)) {
			host_finish(r, h, OM_HS_CANCELLED, -1, false, "cancelled");
			return;
		}
		switch (h->phase) {
		case PH_FREE:
			return;
		case PH_CONNECT:
			if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				return;
			err = 0;
			elen = sizeof err;
			if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
				err = errno;
			if (err != 0) {
				h->conn_err = err;
				epoll_ctl(r->ep, EPOLL_CTL_DEL, h->fd, NULL);
				close(h->fd);
				h->fd = -1;
				h->ai = h->ai->ai_next;
				host_connect(r, h);
				return;
			}
			h->s = libssh2_session_init();
			if (h->s == NULL) {
				host_finish(r, h, OM_HS_FAILED, -1, false, "out of memory");
				return;
			}
			libssh2_session_set_blocking(h->s, 0);
			/* known_hosts holds ed25519 keys; libssh2 would pick ECDSA first. */
			if (libssh2_session_method_pref(h->s, LIBSSH2_METHOD_HOSTKEY,
			                                "ssh-ed25519") != 0) {
				host_finish(r, h, OM_HS_FAILED, -1, false, "ssh setup failed: %s",
				            session_error(h->s));
				return;
			}
			h->phase = PH_HANDSHAKE;
			break;
		case PH_HANDSHAKE:
			rc = libssh2_session_handshake(h->s, h->fd);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc != 0) {
				host_finish(r, h, OM_HS_UNREACHABLE, -1, false,
				            "ssh handshake failed: %s", session_error(h->s));
				return;
			}
			/* Before any credential leaves this process. */
			if (host_check_key(r, h) != 0)
				return;
			h->phase = PH_AUTH;
			break;
		case PH_AUTH:
			rc = libssh2_userauth_publickey_fromfile_ex(h->s, h->t->user,
			                                            (unsigned)strlen(h->t->user),
			                                            NULL, r->opts->privkey, NULL);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
			    rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
				host_finish(r, h, OM_HS_FAILED, -1, false,
				            "authentication failed for user '%s' (publickey)",
				            h->t->user);
				return;
			}
			if (rc != 0) {
				host_finish(r, h, OM_HS_FAILED, -1, false,
				            "authentication failed for user '%s' (publickey): %s",
				            h->t->user, session_error(h->s));
				return;
			}
			h->conn_deadline = 0;
			h->phase = PH_CHOPEN;
			break;
		case PH_CHOPEN:
			h->ch = libssh2_channel_open_session(h->s);
			if (h->ch == NULL) {
				if (libssh2_session_last_errno(h->s) == LIBSSH2_ERROR_EAGAIN)
					return;
				host_finish(r, h, OM_HS_FAILED, -1, false,
				            "cannot open an ssh channel: %s", session_error(h->s));
				return;
			}
			h->phase = PH_EXEC;
			break;
		case PH_EXEC:
			rc = libssh2_channel_exec(h->ch, r->command);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc != 0) {
				host_finish(r, h, OM_HS_FAILED, -1, false, "exec failed: %s",
				            session_error(h->s));
				return;
			}
			h->phase = PH_READ;
			break;
		case PH_READ:
			rc = host_read(r, h);
			if (rc <= 0)
				return;
			if (run_cancelled(r))
				break; /* the check at the top ends the host */
			h->phase = PH_CLOSE;
			break;
		case PH_CLOSE:
			rc = libssh2_channel_close(h->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc != 0) {
				host_where(h->t, where, sizeof where);
				host_finish(r, h, OM_HS_FAILED, -1, false,
				            "connection to %s lost: %s", where,
				            session_error(h->s));
				return;
			}
			h->phase = PH_WAITCLOSED;
			break;
		case PH_WAITCLOSED:
			rc = libssh2_channel_wait_closed(h->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc != 0) {
				host_finish(r, h, OM_HS_FAILED, -1, false,
				            "channel closed without an exit status: %s",
				            session_error(h->s));
				return;
			}
			host_exit(r, h);
			return;
		}
	}
}

/* Points epoll at the direction libssh2 waits for: a blocked write must not spin on EPOLLIN. */
static void
host_arm(struct ssh_run *r, struct ssh_host *h)
{
	struct epoll_event ev;
	uint32_t want = 0;
	int dir;

	if (h->phase == PH_CONNECT) {
		want = EPOLLOUT;
	} else {
		dir = libssh2_session_block_directions(h->s);
		if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
			want |= EPOLLIN;
		if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			want |= EPOLLOUT;
		if (want == 0)
			want = EPOLLIN;
	}
	if (want == h->armed)
		return;
	ev.events = want;
	ev.data.u64 = (uint64_t)(h - r->slots);
	if (epoll_ctl(r->ep, EPOLL_CTL_MOD, h->fd, &ev) == 0)
		h->armed = want;
}

/* Ends hosts whose deadline passed; returns the ms until the next deadline (capped at max). */
static int
check_deadlines(struct ssh_run *r, int max)
{
	int64_t now = om_now_ms(), next = now + max;
	char where[300];
	size_t i;

	for (i = 0; i < r->nslots; i++) {
		struct ssh_host *h = &r->slots[i];

		if (h->phase == PH_FREE)
			continue;
		if (h->deadline != 0 && now >= h->deadline) {
			host_finish(r, h, OM_HS_TIMEOUT, -1, false, "timed out after %u s",
			            r->opts->timeout_s);
			continue;
		}
		if (h->conn_deadline != 0 && now >= h->conn_deadline) {
			host_where(h->t, where, sizeof where);
			if (h->phase == PH_CONNECT)
				host_finish(r, h, OM_HS_UNREACHABLE, -1, false,
				            "connect to %s: timed out after %u s", where,
				            r->connect_timeout_s);
			else if (h->phase == PH_HANDSHAKE)
				host_finish(r, h, OM_HS_UNREACHABLE, -1, false,
				            "ssh handshake failed: no answer from %s within %u s",
				            where, r->connect_timeout_s);
			else
				host_finish(r, h, OM_HS_TIMEOUT, -1, false,
				            "authentication on %s timed out after %u s", where,
				            r->connect_timeout_s);
			continue;
		}
		if (h->deadline != 0 && h->deadline < next)
			next = h->deadline;
		if (h->conn_deadline != 0 && h->conn_deadline < next)
			next = h->conn_deadline;
	}
	return next > now ? (int)(next - now) : 0;
}

/* Every host not yet done, running or queued, ends with state and reason. */
static void
finish_all(struct ssh_run *r, int state, const char *running, const char *queued)
{
	size_t i;

	for (i = 0; i < r->nslots; i++)
		if (r->slots[i].phase != PH_FREE)
			host_finish(r, &r->slots[i], state, -1, false, "%s", running);
	for (; r->next < r->n; r->next++)
		r->cb->done(r->cb->arg, r->next, state, -1, queued, 0);
}

static void
run_loop(struct ssh_run *r)
{
	struct epoll_event evs[SSH_MAX_EVENTS];
	int64_t last_sweep = om_now_ms(), now;
	char msg[SSH_REASON_MAX], ebuf[128];
	size_t i, active;
	int nev, k, wait_ms;
	bool more, sweep;

	while (r->next < r->n || r->active > 0) {
		if (run_cancelled(r)) {
			finish_all(r, OM_HS_CANCELLED, "cancelled", "cancelled before it started");
			return;
		}
		/* Fill free slots; a host can end at once (bad address), so retry the slot. */
		for (i = 0; i < r->nslots && r->next < r->n; i++)
			while (r->slots[i].phase == PH_FREE && r->next < r->n)
				host_start(r, &r->slots[i], r->next++);
		if (r->active == 0)
			continue;

		more = false;
		for (i = 0; i < r->nslots; i++) {
			if (r->slots[i].phase == PH_FREE)
				continue;
			host_arm(r, &r->slots[i]);
			more |= r->slots[i].more;
		}
		active = r->active;
		wait_ms = check_deadlines(r, SSH_TICK_MS);
		if (r->active < active)
			continue; /* a slot came free: start the next host before sleeping */
		if (more)
			wait_ms = 0;
		nev = epoll_wait(r->ep, evs, SSH_MAX_EVENTS, wait_ms);
		if (nev < 0) {
			if (errno == EINTR)
				continue;
			snprintf(msg, sizeof msg, "worker error: epoll_wait: %s",
			         errno_text(errno, ebuf, sizeof ebuf));
			finish_all(r, OM_HS_FAILED, msg, msg);
			return;
		}
		for (k = 0; k < nev; k++) {
			struct ssh_host *h = &r->slots[evs[k].data.u64];

			h->stepped = true;
			host_step(r, h, evs[k].events);
		}
		/*
		 * libssh2 may already hold packets that no socket event will
		 * announce (read budget spent); those hosts go now.  Every tick all
		 * others are stepped too, as a backstop: stepping an idle session
		 * costs one recv() that says EAGAIN.
		 */
		now = om_now_ms();
		sweep = now - last_sweep >= SSH_TICK_MS;
		if (sweep)
			last_sweep = now;
		for (i = 0; i < r->nslots; i++) {
			struct ssh_host *h = &r->slots[i];

			if (h->phase != PH_FREE && h->phase != PH_CONNECT && !h->stepped &&
			    (h->more || sweep))
				host_step(r, h, 0);
			h->stepped = false;
		}
		check_deadlines(r, SSH_TICK_MS);
	}
}

static int
file_check(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return OM_EINVAL;
	if (access(path, R_OK) == 0)
		return 0;
	if (errno == ENOENT || errno == ENOTDIR)
		return OM_ENOTFOUND;
	if (errno == EACCES || errno == EPERM)
		return OM_EPERM;
	return OM_EIO;
}

int
om_ssh_run(const struct om_ssh_opts *opts, const struct om_ssh_target *hosts, size_t n,
           const char *command, const volatile int *cancel, const struct om_ssh_cb *cb)
{
	struct ssh_run *r;
	int rc;

	if (opts == NULL || (hosts == NULL && n > 0) || command == NULL || cb == NULL ||
	    cb->output == NULL || cb->done == NULL || opts->concurrency == 0)
		return OM_EINVAL;
	/* Missing keys are a setup error for the whole run, not n identical host failures. */
	if ((rc = file_check(opts->privkey)) != 0 || (rc = file_check(opts->known_hosts)) != 0)
		return rc;
	if (n == 0)
		return 0;

	r = om_calloc(1, sizeof *r);
	if (r == NULL)
		return OM_ENOMEM;
	r->opts = opts;
	r->hosts = hosts;
	r->n = n;
	r->command = command;
	r->cancel = cancel;
	r->cb = cb;
	r->connect_timeout_s =
	        opts->connect_timeout_s ? opts->connect_timeout_s : SSH_CONNECT_TIMEOUT_S;
	r->nslots = opts->concurrency < n ? opts->concurrency : n;
	r->ep = -1;

	rc = OM_ENOMEM;
	r->slots = om_calloc(r->nslots, sizeof *r->slots);
	if (r->slots == NULL)
		goto out;
	r->kh_session = libssh2_session_init();
	if (r->kh_session == NULL)
		goto out;
	r->kh = libssh2_knownhost_init(r->kh_session);
	if (r->kh == NULL)
		goto out;
	/* A line libssh2 can't parse stops the read: refuse rather than check against half a file.
	 */
	if (libssh2_knownhost_readfile(r->kh, opts->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) <
	    0) {
		rc = OM_EINVAL;
		goto out;
	}
	r->ep = epoll_create1(EPOLL_CLOEXEC);
	if (r->ep < 0) {
		rc = OM_ESYS;
		goto out;
	}
	run_loop(r);
	rc = 0;
out:
	if (r->ep >= 0)
		close(r->ep);
	if (r->kh != NULL)
		libssh2_knownhost_free(r->kh);
	if (r->kh_session != NULL)
		libssh2_session_free(r->kh_session);
	om_free(r->slots);
	om_free(r);
	return rc;
}
