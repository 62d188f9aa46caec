/*
 * The SSH engine (see engine.h): one loop thread, epoll, non-blocking
 * libssh2, a session pool, and the host-API table plugins call.
 *
 * Objects, all owned by the loop thread:
 *   struct conn  one TCP connection + SSH session; busy (owned by one host),
 *                pooled (idle, keyed by user@addr:port) or connecting
 *   struct trun  one task: its hosts, forks, callbacks
 *   struct hrun  one host of a task: its state, its connection, the module
 *                operation in flight (struct op) and a kill operation
 * Other threads talk to the loop only through the command queue and the
 * eventfd (submit, cancel, close) and through two atomics (pause, stats).
 *
 * Conns are never freed while an epoll batch is being handled: a dead conn
 * goes to the graveyard and is freed after the batch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <openssl/evp.h>

#include "engine.h"
#include "om/base.h"
#include "om/params.h"
#include "sshkey.h"

#define TICK_MS         50
#define MAX_EVENTS      256
#define READ_BUF        32768
#define READ_BUDGET     8 /* reads per stream per wakeup: one busy host cannot starve the rest */
#define REASON_MAX      512
#define CAPTURE_DEFAULT (1u << 20)
#define DOWNLOAD_MAX    (64u << 20)
#define DOWNLOAD_BUDGET ((size_t)256 << 20) /* bytes all downloads in flight may hold */
#define POOL_BUCKETS    4096
#define PID_MARK        "\036om-pid "
#define PID_SCAN_MAX    4096 /* stderr bytes searched for the marker */
#define ABORT_EXTRA_MS  3000 /* after the kill grace, how long before the session is dropped */
/* One line, on the stream that crossed max_output; %llu is the cap. */
#define OUTPUT_CUT_MARK                                                                            \
	"\n[omserver: output truncated at %llu bytes (om-worker --max-output); the rest was "      \
	"dropped, the command kept running]\n"
#define OUTPUT_CUT_REASON "output truncated at %llu bytes (om-worker --max-output)"

_Static_assert(OM_PLUGIN_EINVAL == OM_EINVAL && OM_PLUGIN_ENOMEM == OM_ENOMEM &&
                       OM_PLUGIN_ETIMEDOUT == OM_ETIMEDOUT && OM_PLUGIN_ENOTFOUND == OM_ENOTFOUND &&
                       OM_PLUGIN_EIO == OM_EIO && OM_PLUGIN_EPERM == OM_EPERM &&
                       OM_PLUGIN_ERANGE == OM_ERANGE && OM_PLUGIN_ECANCELED == OM_ECANCELED,
               "plugin.h error codes follow err.h");
_Static_assert(OM_PLUGIN_OK == OM_HS_OK && OM_PLUGIN_FAILED == OM_HS_FAILED &&
                       OM_PLUGIN_UNREACHABLE == OM_HS_UNREACHABLE,
               "plugin.h states follow msg.h");

enum cstate { C_RESOLVE, C_CONNECT, C_HANDSHAKE, C_AUTH, C_READY, C_DEAD };
enum hstate { H_QUEUED, H_CONNECTING, H_RETRY_WAIT, H_MODULE, H_DONE };
enum opkind { OP_EXEC, OP_UPLOAD, OP_DOWNLOAD, OP_KILL };
enum ophase {
	P_OPEN,  /* exec: channel; transfers: sftp subsystem */
	P_START, /* exec: exec request; transfers: open the file */
	P_IO,    /* exec: stdin and output; transfers: data */
	P_CLOSE, /* exec: channel close; transfers: close handle */
	P_WAIT,  /* exec: wait closed */
};

struct engine;
struct hrun;

struct conn {
	struct engine *e;
	enum cstate st;
	int fd;
	LIBSSH2_SESSION *s;
	LIBSSH2_SFTP *sftp;
	char key[OM_MAX_NAME * 3 + 16]; /* name|user@addr:port, the pool key */
	char where[300];                /* addr:port for messages */
	const struct om_ssh_target *t;  /* of the host that opened it; NULL once pooled */
	struct addrinfo *ai_list, *ai;
	int conn_err;
	uint32_t armed;
	int64_t step_deadline;
	int64_t last_used, next_keepalive;
	struct hrun *owner;
	bool more;               /* libssh2 may hold data no socket event will announce */
	bool peer_gone;          /* hang-up or error seen: reads go on even while paused */
	struct op *send_owner;   /* its packet is half sent: it alone may send */
	struct resolve *resolve; /* C_RESOLVE: the lookup in flight */
	void *login_key;         /* C_AUTH: the struct om_sshkey this login signs with */
	bool in_pool;
	unsigned bucket;
	struct conn *next, *prev;   /* every conn */
	struct conn *bnext, *bprev; /* pool bucket */
	struct conn *lnext, *lprev; /* pool LRU: oldest first */
	struct conn *gnext;         /* graveyard */
};

struct op {
	struct engine *e;
	enum opkind kind;
	enum ophase phase;
	LIBSSH2_CHANNEL *ch;
	LIBSSH2_SFTP_HANDLE *fh;
	char *cmd;
	uint8_t *data; /* stdin or upload bytes (owned) */
	size_t len, pos;
	bool eof_sent;
	bool statted;         /* download: size checked */
	enum ophase dl_phase; /* the phase deadline was set for */
	int64_t deadline;     /* of this phase (open, start, close); 0: none */
	unsigned flags;
	size_t cap;
	struct om_buf out, err;
	struct om_buf held; /* stderr read with the pid marker while output was paused */
	bool truncated;
	/* the pid marker on stderr */
	char line[96];
	size_t linelen;
	size_t scanned;
	bool pid_done;
	long pid;
	/* transfers */
	char *path;
	unsigned mode;
	size_t max;
	om_exec_cb ecb;
	om_xfer_cb xcb;
	void *arg;
	/* the sim connector (opts.sim): its completion, and the host it is for */
	struct om_sim_timer sim;
	struct hrun *sim_h;
};

struct arena_blk {
	struct arena_blk *next;
	max_align_t data[];
};

struct filecache {
	char *name; /* owned: the plugin's string may not outlive the call */
	uint8_t *data;
	size_t len;
	int rc;
};

struct trun {
	struct engine *e;
	struct om_engine_task task;
	struct om_engine_cb cb;
	struct hrun *h;
	size_t next; /* next host to start */
	size_t active, ndone;
	unsigned forks;
	struct filecache *files;
	size_t nfiles;
	struct trun *tnext;
};

struct hrun {
	struct trun *t;
	size_t idx;
	enum hstate st;
	struct conn *c;
	int64_t t0, deadline, retry_at, abort_deadline;
	unsigned tries;
	bool reused;      /* its session came from the pool */
	bool used;        /* an op ran on the session: a stale pooled session shows at the first */
	struct op *op;    /* the module's operation in flight */
	struct op *kill;  /* stopping the remote process */
	int abort;        /* 0, OM_HS_CANCELLED or OM_HS_TIMEOUT */
	bool in_callback; /* the plugin is running: finish must not free yet */
	bool finished;    /* the plugin called finish */
	bool lost;        /* its session broke under an op: no further ops */
	int fstate, fexit;
	char *freason;
	bool changed;
	char *result;
	char note[REASON_MAX];
	struct arena_blk *arena;
	uint64_t out_bytes; /* streamed stdout + stderr so far, at most max_output */
	bool out_cut;       /* max_output reached: marker sent, later output read and dropped */
};

enum cmdkind { CMD_SUBMIT, CMD_CANCEL, CMD_RESOLVED };

/*
 * One DNS lookup.  getaddrinfo blocks, so it runs on a resolver thread; the
 * answer comes back to the loop as a command.  Only the loop touches c
 * (NULL once the conn is gone: the answer is then dropped).
 */
struct resolve {
	struct resolve *next;
	struct conn *c;
	char host[OM_MAX_NAME + 1], port[8];
	struct addrinfo *res;
	int rc, err;
};

/* Shared with the resolver threads, freed by the last one to leave. */
struct resolver {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct resolve *head, *tail;
	struct engine *e; /* NULL once the engine closed */
	unsigned refs, threads, idle;
};

struct cmd {
	enum cmdkind kind;
	struct trun *t;
	struct resolve *rs;
	uint64_t id;
	struct cmd *next;
};

struct keyref {
	struct om_sshkey *k;
	struct keyref *next;
};

struct engine {
	struct om_engine_opts o;
	pthread_t thread;
	int ep, evfd;
	pthread_mutex_t lock; /* guards cmds, closing */
	struct cmd *cmds, *cmds_tail;
	bool closing;
	bool joined;       /* the loop thread was (or is being) joined */
	bool loop_closing; /* the loop's copy of closing, for the loop's own use */
	atomic_bool paused;
	/* stats, written by the loop, read by anyone */
	atomic_uint_fast64_t st_logins, st_reused;
	atomic_uint st_sessions, st_idle, st_tasks, st_active;
	/* loop-owned from here */
	LIBSSH2_SESSION *kh_session;
	LIBSSH2_KNOWNHOSTS *kh;
	struct timespec kh_mtime;
	off_t kh_size;
	/* The login key parsed once (NULL: libssh2 reads the file at each login). */
	struct om_sshkey *key;
	struct timespec key_mtime;
	off_t key_size;
	struct keyref *key_old; /* replaced keys: a login in flight may still sign with one */
	struct trun *tasks;
	struct conn *conns;
	unsigned nconns, nidle;
	struct conn *buckets[POOL_BUCKETS];
	struct conn *lru_head, *lru_tail;
	struct conn *graveyard;
	struct resolver *resolver;
	size_t dl_held; /* bytes held by downloads in flight (DOWNLOAD_BUDGET) */
	struct om_sim_queue simq; /* opts.sim: simulated ops, by completion time */
	uint8_t buf[READ_BUF];
};

/* ------------------------------------------------------------------ helpers */

static const char *
session_error(LIBSSH2_SESSION *s)
{
	char *msg = NULL;

	if (s == NULL)
		return "no session";
	libssh2_session_last_error(s, &msg, NULL, 0);
	return msg != NULL && *msg != '\0' ? msg : "unknown error";
}

static const char *
errno_text(int err, char *buf, size_t len)
{
	return strerror_r(err, buf, len); /* GNU: returns the text, maybe not in buf */
}

/* Bytes from the remote (signal names, libssh2 messages) go to a person: printable ASCII only. */
static void
sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

static unsigned
hash_key(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % POOL_BUCKETS;
}

/*
 * Per inventory host, not per address: two inventory names for one address
 * are two hosts to the operator (their facts, their audit rows), and a
 * session is never shared between them.
 */
static void
make_key(const struct om_ssh_target *t, char *out, size_t len)
{
	snprintf(out, len, "%s|%s@%s:%u", t->name ? t->name : "", t->user, t->addr,
	         t->port ? t->port : 22);
}

static void
make_where(const struct om_ssh_target *t, char *out, size_t len)
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

static void
wakeup(struct engine *e)
{
	uint64_t one = 1;
	ssize_t rc = write(e->evfd, &one, sizeof one);

	(void)rc; /* a full counter already means "wake up" */
}

/* ------------------------------------------------------------- known hosts */

static void conn_kill(struct engine *e, struct conn *c, bool graceful);

static int
kh_load(struct engine *e)
{
	struct stat st;
	LIBSSH2_KNOWNHOSTS *kh;

	if (stat(e->o.known_hosts, &st) != 0)
		return errno == ENOENT ? OM_ENOTFOUND : OM_EIO;
	if ((kh = libssh2_knownhost_init(e->kh_session)) == NULL)
		return OM_ENOMEM;
	/* A line libssh2 can't parse stops the read: refuse rather than check against half a file.
	 */
	if (st.st_size > 0 &&
	    libssh2_knownhost_readfile(kh, e->o.known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
		libssh2_knownhost_free(kh);
		return OM_EINVAL;
	}
	if (e->kh != NULL)
		libssh2_knownhost_free(e->kh);
	e->kh = kh;
	e->kh_mtime = st.st_mtim;
	e->kh_size = st.st_size;
	return 0;
}

/* An administrator may edit known_hosts while the worker runs: reload when it changed. */
static void
kh_refresh(struct engine *e)
{
	struct stat st;
	int rc;

	if (e->o.sim.on || stat(e->o.known_hosts, &st) != 0)
		return;
	if (st.st_mtim.tv_sec == e->kh_mtime.tv_sec && st.st_mtim.tv_nsec == e->kh_mtime.tv_nsec &&
	    st.st_size == e->kh_size)
		return;
	if ((rc = kh_load(e)) != 0) {
		om_warn("known_hosts '%s' changed but cannot be read (%s): keeping the old copy",
		        e->o.known_hosts, om_strerror(rc));
		return;
	}
	/* Pooled sessions were verified against the old file: check every host again. */
	if (e->nidle > 0) {
		om_info("known_hosts '%s' changed: closing %u pooled sessions", e->o.known_hosts,
		        e->nidle);
		while (e->lru_head != NULL)
			conn_kill(e, e->lru_head, true);
	}
}

/*
 * (Re)reads the login key when the file changed (as kh_refresh for
 * known_hosts).  A key of a kind sshkey.c does not hold leaves e->key NULL:
 * libssh2 then reads the file at every login, as before.
 */
static void
key_refresh(struct engine *e)
{
	struct om_sshkey *k;
	struct keyref *old;
	struct stat st;
	int rc;

	if (e->o.sim.on || stat(e->o.privkey, &st) != 0)
		return;
	if (st.st_mtim.tv_sec == e->key_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == e->key_mtime.tv_nsec && st.st_size == e->key_size)
		return;
	e->key_mtime = st.st_mtim;
	e->key_size = st.st_size;
	if ((rc = om_sshkey_load(e->o.privkey, &k)) != 0) {
		if (rc != OM_ETYPE)
			om_debug("ssh key '%s': %s; libssh2 reads it at each login", e->o.privkey,
			         om_strerror(rc));
		k = NULL;
	}
	if (e->key != NULL) {
		if ((old = om_calloc(1, sizeof(*old))) == NULL) {
			om_sshkey_free(k); /* keep the old key rather than free one in use */
			e->key_size = -1;  /* and try again at the next login */
			return;
		}
		old->k = e->key;
		old->next = e->key_old;
		e->key_old = old;
	}
	e->key = k;
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

static const char *
keytype_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return "ssh-ed25519";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return "ssh-rsa";
	default:
		return "unknown";
	}
}

/*
 * The host-key algorithms to offer: those known_hosts holds for this host
 * (a server with several keys then proves the one we can check), or every
 * algorithm we can verify, strongest first, for a host not yet known.
 */
static void
kh_algorithms(struct engine *e, const struct om_ssh_target *t, char *out, size_t len)
{
	struct libssh2_knownhost *k = NULL;
	unsigned port = t->port ? t->port : 22;
	char n1[300], n2[300];
	int mask = 0;
	struct om_buf b;

	kh_name(t->addr, port, n1, sizeof n1);
	kh_name(t->name ? t->name : t->addr, port, n2, sizeof n2);
	while (libssh2_knownhost_get(e->kh, &k, k) == 0) {
		int kt = k->typemask & LIBSSH2_KNOWNHOST_KEY_MASK;

		if (k->name == NULL || (strcmp(k->name, n1) != 0 && strcmp(k->name, n2) != 0))
			continue;
		if (kt == LIBSSH2_KNOWNHOST_KEY_ED25519)
			mask |= 1;
		else if (kt == LIBSSH2_KNOWNHOST_KEY_ECDSA_256)
			mask |= 2;
		else if (kt == LIBSSH2_KNOWNHOST_KEY_ECDSA_384)
			mask |= 4;
		else if (kt == LIBSSH2_KNOWNHOST_KEY_ECDSA_521)
			mask |= 8;
		else if (kt == LIBSSH2_KNOWNHOST_KEY_SSHRSA)
			mask |= 16;
	}
	if (mask == 0)
		mask = 31;
	om_buf_init(&b, len);
	if (mask & 1)
		om_buf_printf(&b, "ssh-ed25519,");
	if (mask & 2)
		om_buf_printf(&b, "ecdsa-sha2-nistp256,");
	if (mask & 4)
		om_buf_printf(&b, "ecdsa-sha2-nistp384,");
	if (mask & 8)
		om_buf_printf(&b, "ecdsa-sha2-nistp521,");
	if (mask & 16)
		om_buf_printf(&b, "rsa-sha2-512,rsa-sha2-256,");
	snprintf(out, len, "%.*s", b.len > 0 ? (int)b.len - 1 : 0, (const char *)b.data);
	om_buf_release(&b);
}

static int
kh_check(struct engine *e, const char *host, unsigned port, const char *key, size_t len, int type)
{
	char name[300];

	kh_name(host, port, name, sizeof name);
	return libssh2_knownhost_check(e->kh, name, key, len,
	                               LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                       kh_keytype(type),
	                               NULL);
}

/* "SHA256:base64" as ssh-keygen -l prints it. */
static void
key_fingerprint(LIBSSH2_SESSION *s, char *out, size_t len)
{
	const unsigned char *h =
	        (const unsigned char *)libssh2_hostkey_hash(s, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char b64[64];
	int n;

	if (h == NULL) {
		snprintf(out, len, "SHA256:?");
		return;
	}
	n = EVP_EncodeBlock(b64, h, 32);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, len, "SHA256:%.*s", n, (const char *)b64);
}

/* Appends the key for "[addr]:port" to known_hosts (accept-new). */
static int
kh_add(struct engine *e, const struct om_ssh_target *t, const char *key, size_t klen, int type)
{
	struct libssh2_knownhost *entry = NULL;
	unsigned port = t->port ? t->port : 22;
	char name[300], line[8192];
	size_t outlen = 0;
	struct stat st;
	int fd, rc;
	ssize_t w;

	kh_name(t->addr, port, name, sizeof name);
	rc = libssh2_knownhost_addc(e->kh, name, NULL, key, klen, "omserver accept-new", 19,
	                            LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
	                                    kh_keytype(type),
	                            &entry);
	if (rc != 0)
		return OM_EINVAL;
	if (libssh2_knownhost_writeline(e->kh, entry, line, sizeof line, &outlen,
	                                LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
		return OM_EINVAL;
	if ((fd = open(e->o.known_hosts, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0)
		return OM_EIO;
	w = write(fd, line, outlen);
	if (fstat(fd, &st) == 0) {
		/* Our own write: not a reason to reload. */
		e->kh_mtime = st.st_mtim;
		e->kh_size = st.st_size;
	}
	close(fd);
	return w == (ssize_t)outlen ? 0 : OM_EIO;
}

/* ------------------------------------------------------------------- conns */

static void
lru_unlink(struct engine *e, struct conn *c)
{
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		e->lru_head = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	else
		e->lru_tail = c->lprev;
	c->lnext = c->lprev = NULL;
}

static void
pool_remove(struct engine *e, struct conn *c)
{
	if (!c->in_pool)
		return;
	if (c->bprev)
		c->bprev->bnext = c->bnext;
	else
		e->buckets[c->bucket] = c->bnext;
	if (c->bnext)
		c->bnext->bprev = c->bprev;
	c->bnext = c->bprev = NULL;
	lru_unlink(e, c);
	c->in_pool = false;
	e->nidle--;
	atomic_store(&e->st_idle, e->nidle);
}

static void
conn_arm(struct conn *c, uint32_t want)
{
	struct epoll_event ev;

	if (c->fd < 0 || want == c->armed)
		return;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(c->e->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->armed = want;
}

/*
 * Drops a conn without ever blocking: the socket is shut down first, so
 * libssh2's frees fail at once instead of waiting for the peer (a channel
 * whose command still runs never closes; session_free refuses while a
 * channel is open).  The memory goes at the next safe point.
 */
static void
conn_kill(struct engine *e, struct conn *c, bool graceful)
{
	if (c->st == C_DEAD)
		return;
	if (c->resolve != NULL)
		c->resolve->c = NULL; /* its answer is dropped when it comes */
	c->resolve = NULL;
	pool_remove(e, c);
	if (c->fd >= 0) {
		epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
		if (graceful && c->s != NULL && c->st == C_READY)
			libssh2_session_disconnect(c->s, "idle"); /* one try, EAGAIN is fine */
		shutdown(c->fd, SHUT_RDWR);
	}
	if (c->sftp != NULL)
		libssh2_sftp_shutdown(c->sftp);
	c->sftp = NULL;
	if (c->s != NULL)
		libssh2_session_free(c->s);
	c->s = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->ai_list != NULL)
		freeaddrinfo(c->ai_list);
	c->ai_list = c->ai = NULL;
	c->st = C_DEAD;
	if (c->owner != NULL && c->owner->c == c)
		c->owner->c = NULL;
	c->owner = NULL;
	/* unlink from the list of all conns */
	if (c->prev)
		c->prev->next = c->next;
	else
		e->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	e->nconns--;
	atomic_store(&e->st_sessions, e->nconns);
	c->gnext = e->graveyard;
	e->graveyard = c;
}

static void
graveyard_free(struct engine *e)
{
	while (e->graveyard != NULL) {
		struct conn *c = e->graveyard;

		e->graveyard = c->gnext;
		om_free(c);
	}
}

static void
pool_put(struct engine *e, struct conn *c)
{
	int64_t now = om_now_ms();

	c->owner = NULL;
	c->t = NULL;
	c->more = false;
	c->send_owner = NULL;
	c->in_pool = true;
	c->bucket = hash_key(c->key);
	c->bnext = e->buckets[c->bucket];
	c->bprev = NULL;
	if (c->bnext)
		c->bnext->bprev = c;
	e->buckets[c->bucket] = c;
	c->lprev = e->lru_tail;
	c->lnext = NULL;
	if (e->lru_tail)
		e->lru_tail->lnext = c;
	else
		e->lru_head = c;
	e->lru_tail = c;
	c->last_used = now;
	c->next_keepalive = now + (int64_t)e->o.keepalive_s * 1000;
	e->nidle++;
	atomic_store(&e->st_idle, e->nidle);
	/* Idle: only a hang-up matters; reading would need a channel. */
	conn_arm(c, EPOLLRDHUP);
}

static struct conn *
pool_take(struct engine *e, const char *key)
{
	struct conn *c;

	for (c = e->buckets[hash_key(key)]; c != NULL; c = c->bnext)
		if (strcmp(c->key, key) == 0) {
			pool_remove(e, c);
			return c;
		}
	return NULL;
}

/* ------------------------------------------------------------ host finish */

static void host_abort_ops(struct engine *e, struct hrun *h);
static void task_schedule(struct engine *e);

static void
arena_free(struct hrun *h)
{
	while (h->arena != NULL) {
		struct arena_blk *b = h->arena;

		h->arena = b->next;
		om_free(b);
	}
}

static void
op_free(struct op *op)
{
	if (op == NULL)
		return;
	if (op->kind == OP_DOWNLOAD && op->e != NULL)
		op->e->dl_held -= op->out.len;
	if (op->e != NULL)
		om_sim_queue_del(&op->e->simq, &op->sim);
	om_free(op->cmd);
	om_free(op->data);
	om_free(op->path);
	om_buf_release(&op->out);
	om_buf_release(&op->err);
	om_buf_release(&op->held);
	om_free(op);
}

/*
 * Ends a host: one done callback, its session back to the pool when it is
 * healthy, a slot for the next host.
 */
static void host_end(struct engine *e, struct hrun *h, int state, int exit_code, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));

static void
host_end(struct engine *e, struct hrun *h, int state, int exit_code, const char *fmt, ...)
{
	struct trun *t = h->t;
	struct om_engine_outcome o;
	char reason[REASON_MAX];
	int64_t dur = h->t0 ? om_now_ms() - h->t0 : 0;
	bool was_active = h->st != H_QUEUED;
	va_list ap;

	if (h->st == H_DONE)
		return;
	reason[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(reason, sizeof reason, fmt, ap);
		va_end(ap);
	}
	if (h->out_cut) {
		/* The module's reason, shortened if need be, then the truncation. */
		char cut[128];
		int n = snprintf(cut, sizeof cut, "%s" OUTPUT_CUT_REASON, reason[0] ? "; " : "",
		                 (unsigned long long)e->o.max_output);
		size_t keep = strnlen(reason, sizeof reason - 1 - (size_t)n);

		memcpy(reason + keep, cut, (size_t)n + 1);
	}
	if (h->op != NULL || h->kill != NULL)
		host_abort_ops(e, h); /* a plugin that finished with an op in flight */
	if (h->c != NULL) {
		struct conn *c = h->c;

		h->c = NULL;
		if (c->st == C_READY && state != OM_HS_TIMEOUT && state != OM_HS_CANCELLED &&
		    !e->o.no_pool && !e->loop_closing)
			pool_put(e, c);
		else
			conn_kill(e, c, c->st == C_READY);
	}
	h->st = H_DONE;
	memset(&o, 0, sizeof o);
	o.state = state;
	o.exit_code = exit_code;
	o.reason = fmt != NULL || h->out_cut ? reason : NULL;
	o.changed = h->changed;
	o.result = h->result;
	o.note = h->note[0] ? h->note : NULL;
	o.duration_ms = dur > 0 ? (uint64_t)dur : 0;
	t->cb.done(t->cb.arg, h->idx, &o);
	om_free(h->result);
	h->result = NULL;
	om_free(h->freason);
	h->freason = NULL;
	arena_free(h);
	if (was_active) {
		t->active--;
		atomic_fetch_sub(&e->st_active, 1);
	}
	t->ndone++;
}

/* After a plugin callback: apply a finish the plugin made, or force one after an abort. */
static void
host_settle(struct engine *e, struct hrun *h)
{
	if (h->st == H_DONE || h->in_callback)
		return;
	if (h->finished) {
		if (h->abort == OM_HS_TIMEOUT)
			host_end(e, h, OM_HS_TIMEOUT, -1, "timed out after %u s",
			         h->t->task.timeout_s);
		else if (h->abort == OM_HS_CANCELLED)
			host_end(e, h, OM_HS_CANCELLED, -1, "cancelled");
		else
			host_end(e, h, h->fstate, h->fexit, h->freason ? "%s" : NULL, h->freason);
		return;
	}
	if (h->abort != 0 && h->op == NULL) {
		/* The plugin did not finish after its operation was stopped: finish for it. */
		h->finished = true;
		host_settle(e, h);
	} else if (h->st == H_MODULE && h->op == NULL) {
		/* Nothing left that could ever call the plugin back: it would hang. */
		h->finished = true;
		h->fstate = OM_HS_FAILED;
		h->fexit = -1;
		om_free(h->freason);
		h->freason = om_strdup("module started no operation and did not finish");
		host_settle(e, h);
	}
}

/* ---------------------------------------------------------------- connect */

static void host_connected(struct engine *e, struct hrun *h);
static void host_connect_failed(struct engine *e, struct hrun *h, int state, bool transient,
                                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Tries the addresses left in c->ai until a connect is under way. */
static bool
conn_try_addrs(struct engine *e, struct conn *c)
{
	struct epoll_event ev;
	int one = 1, ka_idle = 30, ka_intvl = 10, ka_cnt = 3;
	unsigned user_to = 60000; /* ms of unacknowledged data before the kernel gives up */

	for (; c->ai != NULL; c->ai = c->ai->ai_next) {
		int fd = socket(c->ai->ai_family, c->ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                c->ai->ai_protocol);

		if (fd < 0) {
			c->conn_err = errno;
			continue;
		}
		/* SSH exchanges many small packets; Nagle would add a delay to each round trip. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/*
		 * A host that vanishes (no FIN, no RST) while its command runs would
		 * otherwise hold its host forever when the task has no timeout.
		 */
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ka_idle, sizeof ka_idle);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ka_intvl, sizeof ka_intvl);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &ka_cnt, sizeof ka_cnt);
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_to, sizeof user_to);
		if (connect(fd, c->ai->ai_addr, c->ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			c->conn_err = errno;
			close(fd);
			continue;
		}
		ev.events = EPOLLOUT;
		ev.data.ptr = c;
		if (epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			c->conn_err = errno;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->armed = EPOLLOUT;
		c->st = C_CONNECT;
		return true;
	}
	return false;
}

#define RESOLVER_THREADS 4

static bool
addr_numeric(const char *a)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

static int post(struct engine *e, struct cmd *c);

static void
resolve_free(struct resolve *rs)
{
	if (rs == NULL)
		return;
	if (rs->res != NULL)
		freeaddrinfo(rs->res);
	om_free(rs);
}

static void
resolver_unref(struct resolver *r)
{
	bool last;

	pthread_mutex_lock(&r->mu);
	last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (!last)
		return;
	while (r->head != NULL) {
		struct resolve *rs = r->head;

		r->head = rs->next;
		resolve_free(rs);
	}
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	om_free(r);
}

static void *
resolver_main(void *arg)
{
	struct resolver *r = arg;
	struct addrinfo hints;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct resolve *rs;
		struct cmd *c;

		while (r->head == NULL && r->e != NULL) {
			r->idle++;
			pthread_cond_wait(&r->cv, &r->mu);
			r->idle--;
		}
		if (r->head == NULL)
			break; /* the engine closed */
		rs = r->head;
		r->head = rs->next;
		if (r->head == NULL)
			r->tail = NULL;
		pthread_mutex_unlock(&r->mu);
		rs->rc = getaddrinfo(rs->host, rs->port, &hints, &rs->res);
		rs->err = errno;
		if (rs->rc != 0)
			rs->res = NULL;
		c = om_calloc(1, sizeof *c);
		pthread_mutex_lock(&r->mu);
		/* Lock order: r->mu, then the engine's lock (post); close takes r->mu alone. */
		if (c != NULL && r->e != NULL) {
			c->kind = CMD_RESOLVED;
			c->rs = rs;
			if (post(r->e, c) == 0)
				continue;
		}
		om_free(c);
		resolve_free(rs);
	}
	r->threads--;
	pthread_mutex_unlock(&r->mu);
	resolver_unref(r);
	return NULL;
}

/* Queues a lookup; a thread starts when none is idle (at most RESOLVER_THREADS). */
static int
resolver_submit(struct engine *e, struct resolve *rs)
{
	struct resolver *r = e->resolver;
	pthread_attr_t attr;
	pthread_t tid;
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	rs->next = NULL;
	if (r->tail)
		r->tail->next = rs;
	else
		r->head = rs;
	r->tail = rs;
	if (r->idle == 0 && r->threads < RESOLVER_THREADS) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		r->refs++;
		r->threads++;
		if (pthread_create(&tid, &attr, resolver_main, r) != 0) {
			r->refs--;
			r->threads--;
			if (r->threads == 0)
				rc = OM_ESYS; /* nobody would ever answer */
		}
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		r->head = r->tail = NULL; /* only rs can be queued with no thread */
	}
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* The loop: a lookup answered. */
static void
resolved(struct engine *e, struct resolve *rs)
{
	struct conn *c = rs->c;
	char ebuf[128];

	if (c == NULL || c->st != C_RESOLVE || c->owner == NULL) {
		resolve_free(rs);
		return;
	}
	c->resolve = NULL;
	if (rs->rc != 0) {
		host_connect_failed(e, c->owner, OM_HS_UNREACHABLE, rs->rc == EAI_AGAIN,
		                    "cannot resolve '%s': %s", rs->host,
		                    rs->rc == EAI_SYSTEM ? errno_text(rs->err, ebuf, sizeof ebuf)
		                                         : gai_strerror(rs->rc));
		resolve_free(rs);
		return;
	}
	c->ai_list = c->ai = rs->res;
	rs->res = NULL;
	resolve_free(rs);
	if (!conn_try_addrs(e, c))
		host_connect_failed(e, c->owner, OM_HS_UNREACHABLE, true, "connect to %s: %s",
		                    c->where,
		                    c->conn_err ? errno_text(c->conn_err, ebuf, sizeof ebuf)
		                                : "no usable address");
}

static void
conn_start(struct engine *e, struct hrun *h)
{
	const struct om_ssh_target *t = &h->t->task.hosts[h->idx];
	struct addrinfo hints;
	struct conn *c;
	char port[8], ebuf[128];
	int rc;

	if ((c = om_calloc(1, sizeof *c)) == NULL) {
		host_end(e, h, OM_HS_FAILED, -1, "worker out of memory");
		return;
	}
	c->e = e;
	c->fd = -1;
	c->t = t;
	c->owner = h;
	make_key(t, c->key, sizeof c->key);
	make_where(t, c->where, sizeof c->where);
	c->next = e->conns;
	if (e->conns)
		e->conns->prev = c;
	e->conns = c;
	e->nconns++;
	atomic_store(&e->st_sessions, e->nconns);
	h->c = c;
	h->st = H_CONNECTING;
	c->step_deadline = om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;

	snprintf(port, sizeof port, "%u", t->port ? t->port : 22);
	if (!addr_numeric(t->addr)) {
		/* A DNS lookup blocks: it goes to a resolver thread, the loop goes on. */
		struct resolve *rs = om_calloc(1, sizeof *rs);

		if (rs == NULL || strlen(t->addr) > OM_MAX_NAME) {
			om_free(rs);
			host_connect_failed(e, h, OM_HS_FAILED, false, "cannot resolve '%s': %s",
			                    t->addr,
			                    rs == NULL ? "out of memory" : "name too long");
			return;
		}
		snprintf(rs->host, sizeof rs->host, "%s", t->addr);
		snprintf(rs->port, sizeof rs->port, "%s", port);
		rs->c = c;
		c->resolve = rs;
		c->st = C_RESOLVE;
		if (resolver_submit(e, rs) != 0) {
			c->resolve = NULL;
			om_free(rs);
			host_connect_failed(e, h, OM_HS_FAILED, false,
			                    "cannot resolve '%s': no resolver thread", t->addr);
		}
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
	rc = getaddrinfo(t->addr, port, &hints, &c->ai_list);
	if (rc != 0) {
		c->ai_list = NULL;
		host_connect_failed(e, h, OM_HS_UNREACHABLE, rc == EAI_AGAIN,
		                    "cannot resolve '%s': %s", t->addr,
		                    rc == EAI_SYSTEM ? errno_text(errno, ebuf, sizeof ebuf)
		                                     : gai_strerror(rc));
		return;
	}
	c->ai = c->ai_list;
	if (!conn_try_addrs(e, c))
		host_connect_failed(e, h, OM_HS_UNREACHABLE, true, "connect to %s: %s", c->where,
		                    c->conn_err ? errno_text(c->conn_err, ebuf, sizeof ebuf)
		                                : "no usable address");
}

/* 0 when the server's host key is acceptable; otherwise the host failed. */
static int
conn_check_key(struct engine *e, struct conn *c, struct hrun *h)
{
	const struct om_ssh_target *t = c->t;
	unsigned port = t->port ? t->port : 22;
	const char *key;
	char fp[80];
	size_t len = 0;
	int type = 0, rc;

	key = libssh2_session_hostkey(c->s, &len, &type);
	if (key == NULL) {
		host_connect_failed(e, h, OM_HS_FAILED, false,
		                    "host key verification failed: %s sent no host key", c->where);
		return -1;
	}
	rc = kh_check(e, t->addr, port, key, len, type);
	if (rc == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && t->name != NULL && t->name[0] != '\0' &&
	    strcmp(t->name, t->addr) != 0)
		rc = kh_check(e, t->name, port, key, len, type);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		return 0;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		host_connect_failed(
		        e, h, OM_HS_FAILED, false,
		        "host key verification failed: the key of %s does not match known_hosts "
		        "(possible man-in-the-middle)",
		        c->where);
		return -1;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		key_fingerprint(c->s, fp, sizeof fp);
		if (e->o.hostkey_policy == OM_HK_ACCEPT_NEW) {
			if (kh_add(e, t, key, len, type) != 0) {
				host_connect_failed(
				        e, h, OM_HS_FAILED, false,
				        "host key of %s is new and cannot be recorded in "
				        "known_hosts '%s'",
				        c->where, e->o.known_hosts);
				return -1;
			}
			snprintf(h->note, sizeof h->note,
			         "host key of %s (%s) accepted and added to known_hosts: %s %s",
			         t->name ? t->name : t->addr, c->where, keytype_name(type), fp);
			om_info("%s", h->note);
			return 0;
		}
		host_connect_failed(
		        e, h, OM_HS_FAILED, false,
		        "host key verification failed: %s is not in known_hosts (%s %s; "
		        "policy strict)",
		        c->where, keytype_name(type), fp);
		return -1;
	default:
		host_connect_failed(e, h, OM_HS_FAILED, false,
		                    "host key verification failed: %s: %s", c->where,
		                    session_error(e->kh_session));
		return -1;
	}
}

/* Advances a connecting conn as far as it goes without blocking. */
static void
conn_connect_step(struct engine *e, struct conn *c, uint32_t events)
{
	struct hrun *h = c->owner;
	const struct om_ssh_target *t = c->t;
	char algs[200], ebuf[128];
	socklen_t elen;
	int rc, err;

	for (;;) {
		if (c->st == C_DEAD || h == NULL)
			return;
		switch (c->st) {
		case C_CONNECT:
			if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				return;
			err = 0;
			elen = sizeof err;
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
				err = errno;
			if (err != 0) {
				c->conn_err = err;
				epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				c->fd = -1;
				c->ai = c->ai->ai_next;
				if (!conn_try_addrs(e, c))
					host_connect_failed(
					        e, h, OM_HS_UNREACHABLE, true, "connect to %s: %s",
					        c->where,
					        errno_text(c->conn_err, ebuf, sizeof ebuf));
				return;
			}
			if ((c->s = libssh2_session_init()) == NULL) {
				host_connect_failed(e, h, OM_HS_FAILED, false,
				                    "worker out of memory");
				return;
			}
			libssh2_session_set_blocking(c->s, 0);
			kh_algorithms(e, t, algs, sizeof algs);
			if (libssh2_session_method_pref(c->s, LIBSSH2_METHOD_HOSTKEY, algs) != 0) {
				host_connect_failed(e, h, OM_HS_FAILED, false,
				                    "ssh setup failed: %s", session_error(c->s));
				return;
			}
			libssh2_keepalive_config(c->s, 0, e->o.keepalive_s);
			c->st = C_HANDSHAKE;
			c->step_deadline = om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;
			break;
		case C_HANDSHAKE:
			rc = libssh2_session_handshake(c->s, c->fd);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc != 0) {
				/* A reset during key exchange is usually sshd's MaxStartups: retry.
				 */
				host_connect_failed(e, h, OM_HS_UNREACHABLE,
				                    rc == LIBSSH2_ERROR_SOCKET_RECV ||
				                            rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
				                            rc == LIBSSH2_ERROR_SOCKET_SEND ||
				                            rc == LIBSSH2_ERROR_KEX_FAILURE,
				                    "ssh handshake with %s failed: %s", c->where,
				                    session_error(c->s));
				return;
			}
			/* Before any credential leaves this process. */
			if (conn_check_key(e, c, h) != 0)
				return;
			c->st = C_AUTH;
			c->step_deadline = om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;
			break;
		case C_AUTH:
			/* One key for the whole login, however often it returns EAGAIN. */
			if (c->login_key == NULL)
				c->login_key = e->key;
			if (c->login_key != NULL) {
				size_t blen;
				const unsigned char *blob = om_sshkey_blob(c->login_key, &blen);

				rc = libssh2_userauth_publickey(c->s, t->user, blob, blen,
				                                om_sshkey_sign, &c->login_key);
			} else {
				rc = libssh2_userauth_publickey_fromfile_ex(
				        c->s, t->user, (unsigned)strlen(t->user), NULL,
				        e->o.privkey, NULL);
			}
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return;
			if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
			    rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
				host_connect_failed(
				        e, h, OM_HS_FAILED, false,
				        "authentication failed for user '%s' (publickey)", t->user);
				return;
			}
			if (rc != 0) {
				host_connect_failed(
				        e, h, OM_HS_FAILED, false,
				        "authentication failed for user '%s' (publickey): %s",
				        t->user, session_error(c->s));
				return;
			}
			atomic_fetch_add(&e->st_logins, 1);
			if (c->ai_list != NULL)
				freeaddrinfo(c->ai_list);
			c->ai_list = c->ai = NULL;
			c->st = C_READY;
			c->step_deadline = 0;
			host_connected(e, h);
			return;
		default:
			return;
		}
	}
}

/* ------------------------------------------------------------------- ops */

static void op_complete(struct engine *e, struct hrun *h, struct op *op, int rc);

/* The code a stopped host's operation ends with. */
static int
abort_rc(const struct hrun *h)
{
	return h->abort == OM_HS_TIMEOUT ? OM_ETIMEDOUT : OM_ECANCELED;
}

/* Splits the "\036om-pid N" line off stderr; the rest goes on as output. */
static void exec_stderr(struct engine *e, struct hrun *h, struct op *op, const uint8_t *d,
                        size_t n);

/*
 * While output is paused a streamed exec reads nothing, except stderr up to
 * the pid marker (cancel needs it) and everything once the host is being
 * stopped (its channel must drain to close) or its output was cut (nothing
 * of it goes to the outbox any more: reading on keeps the command going).
 */
static bool
op_paused(struct engine *e, const struct hrun *h, const struct op *op)
{
	return atomic_load(&e->paused) && op->kind == OP_EXEC && (op->flags & OM_EXEC_STREAM) &&
	       h->abort == 0 && !h->out_cut && (h->c == NULL || !h->c->peer_gone);
}

/*
 * Downloads wait while output is paused (their bytes go to the outbox next)
 * and while all downloads together hold DOWNLOAD_BUDGET; not once the peer
 * hung up or the host is being stopped.
 */
static bool
download_blocked(struct engine *e, const struct hrun *h)
{
	if (h->abort != 0 || (h->c != NULL && h->c->peer_gone))
		return false;
	return atomic_load(&e->paused) || e->dl_held >= DOWNLOAD_BUDGET;
}

/*
 * Streamed output of h (stdout or stderr) to the task, up to max_output per
 * host: the bytes up to the cap, then one marker line on the stream that
 * crossed it, then nothing.  Output that ends exactly at the cap is whole
 * and gets no marker.
 */
static void
host_output(struct engine *e, struct hrun *h, int stream, const uint8_t *d, size_t n)
{
	uint64_t room = e->o.max_output - h->out_bytes;
	char mark[192];
	int len;

	if (h->out_cut || n == 0)
		return;
	if (n <= room) {
		h->out_bytes += n;
		h->t->cb.output(h->t->cb.arg, h->idx, stream, d, n);
		return;
	}
	h->out_bytes = e->o.max_output;
	h->out_cut = true;
	if (room > 0)
		h->t->cb.output(h->t->cb.arg, h->idx, stream, d, (size_t)room);
	len = snprintf(mark, sizeof mark, OUTPUT_CUT_MARK, (unsigned long long)e->o.max_output);
	h->t->cb.output(h->t->cb.arg, h->idx, stream, (const uint8_t *)mark, (size_t)len);
	om_debug("%s: output truncated at %llu bytes", h->t->task.hosts[h->idx].name,
	         (unsigned long long)e->o.max_output);
}

static void
exec_emit(struct engine *e, struct hrun *h, struct op *op, int stream, const uint8_t *d, size_t n)
{
	struct om_buf *cap = stream == OM_STREAM_STDOUT ? &op->out : &op->err;

	if (n == 0)
		return;
	if (stream == OM_STREAM_STDERR && op_paused(e, h, op)) {
		/* At most one read's worth: only the read that found the marker lands here. */
		om_buf_append(&op->held, d, n);
		return;
	}
	if (op->flags & OM_EXEC_STREAM)
		host_output(e, h, stream, d, n);
	if (op->flags & OM_EXEC_CAPTURE) {
		size_t room = op->cap > cap->len ? op->cap - cap->len : 0;

		if (n > room) {
			op->truncated = true;
			n = room;
		}
		if (n > 0)
			om_buf_append(cap, d, n);
	}
}

static void
exec_stderr(struct engine *e, struct hrun *h, struct op *op, const uint8_t *d, size_t n)
{
	size_t i;

	while (n > 0 && !op->pid_done) {
		/* Line by line until the marker shows (rc files may print first). */
		for (i = 0; i < n && d[i] != '\n'; i++)
			;
		size_t take = i < n ? i + 1 : n;
		if (op->linelen + take > sizeof op->line - 1 || op->scanned + take > PID_SCAN_MAX) {
			exec_emit(e, h, op, OM_STREAM_STDERR, (const uint8_t *)op->line,
			          op->linelen);
			op->linelen = 0;
			op->pid_done =
			        true; /* no marker: cancel falls back to dropping the session */
			break;
		}
		memcpy(op->line + op->linelen, d, take);
		op->linelen += take;
		op->scanned += take;
		d += take;
		n -= take;
		if (op->line[op->linelen - 1] != '\n')
			return; /* a partial line: wait for the rest */
		op->line[op->linelen] = '\0';
		if (strncmp(op->line, PID_MARK, strlen(PID_MARK)) == 0) {
			op->pid = strtol(op->line + strlen(PID_MARK), NULL, 10);
			op->pid_done = true;
		} else {
			exec_emit(e, h, op, OM_STREAM_STDERR, (const uint8_t *)op->line,
			          op->linelen);
		}
		op->linelen = 0;
	}
	exec_emit(e, h, op, OM_STREAM_STDERR, d, n);
}

/* Drains both streams (an unread stderr stalls the channel window). 1: EOF, 0: wait, <0 error. */
static int
exec_read(struct engine *e, struct hrun *h, struct op *op)
{
	ssize_t n1 = 0, n2 = 0;
	int i;

	h->c->more = false;
	/*
	 * Paused output waits, but not the pid marker (cancel needs it) and not
	 * a host being stopped (its channel must drain to close).
	 */
	if (op_paused(e, h, op)) {
		if (op->pid_done)
			return 0;
		/* Only stderr, for the marker; what follows it waits in op->held. */
		n2 = libssh2_channel_read_stderr(op->ch, (char *)e->buf, sizeof e->buf);
		if (n2 > 0)
			exec_stderr(e, h, op, e->buf, (size_t)n2);
		if (h->st == H_DONE)
			return -1;
		if (n2 < 0 && n2 != LIBSSH2_ERROR_EAGAIN)
			return (int)n2;
		return 0;
	}
	if (op->held.len > 0) {
		size_t n = op->held.len;

		op->held.len = 0;
		exec_emit(e, h, op, OM_STREAM_STDERR, op->held.data, n);
	}
	for (i = 0; i < READ_BUDGET; i++) {
		n1 = libssh2_channel_read(op->ch, (char *)e->buf, sizeof e->buf);
		if (n1 > 0 && op->kind == OP_EXEC)
			exec_emit(e, h, op, OM_STREAM_STDOUT, e->buf, (size_t)n1);
		n2 = libssh2_channel_read_stderr(op->ch, (char *)e->buf, sizeof e->buf);
		if (n2 > 0 && op->kind == OP_EXEC)
			exec_stderr(e, h, op, e->buf, (size_t)n2);
		if (h->st == H_DONE)
			return -1;
		if (n1 <= 0 && n2 <= 0)
			break;
	}
	if ((n1 < 0 && n1 != LIBSSH2_ERROR_EAGAIN) || (n2 < 0 && n2 != LIBSSH2_ERROR_EAGAIN))
		return (int)(n1 < 0 && n1 != LIBSSH2_ERROR_EAGAIN ? n1 : n2);
	if (n1 > 0 || n2 > 0) {
		h->c->more = true;
		return 0;
	}
	if (libssh2_channel_eof(op->ch))
		return 1;
	if (n1 == 0 && n2 == 0)
		return 1;
	return 0;
}

static int
sftp_code(LIBSSH2_SFTP *sftp)
{
	switch (sftp ? libssh2_sftp_last_error(sftp) : 0) {
	case LIBSSH2_FX_NO_SUCH_FILE:
	case LIBSSH2_FX_NO_SUCH_PATH:
		return OM_ENOTFOUND;
	case LIBSSH2_FX_PERMISSION_DENIED:
	case LIBSSH2_FX_WRITE_PROTECT:
		return OM_EPERM;
	default:
		return OM_EIO;
	}
}

/*
 * A packet is half written to the socket.  libssh2 refuses any other packet
 * on the session until that one is finished (LIBSSH2_ERROR_BAD_USE), and a
 * read may send one (a window adjust): until the socket drains, only the
 * call that was interrupted may be repeated.
 */
static bool
send_pending(const struct conn *c)
{
	return c != NULL && c->s != NULL &&
	       (libssh2_session_block_directions(c->s) & LIBSSH2_SESSION_BLOCK_OUTBOUND);
}

/*
 * Advances one operation.  Returns 0 while it waits (or after it
 * completed), or a libssh2 error for a broken transport (the caller decides
 * whether that is a stale pooled session).
 */
static int
op_step(struct engine *e, struct hrun *h, struct op *op)
{
	struct conn *c = h->c;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	ssize_t n;
	int rc;

	for (;;) {
		if (op->phase != op->dl_phase) {
			/* Output has no deadline of its own (the task timeout bounds it). */
			op->dl_phase = op->phase;
			op->deadline =
			        op->phase == P_IO
			                ? 0
			                : om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;
		}
		switch (op->phase) {
		case P_OPEN:
			if (op->kind == OP_EXEC || op->kind == OP_KILL) {
				op->ch = libssh2_channel_open_session(c->s);
				if (op->ch == NULL) {
					rc = libssh2_session_last_errno(c->s);
					return rc == LIBSSH2_ERROR_EAGAIN ? 0 : (rc ? rc : -1);
				}
			} else if (c->sftp == NULL) {
				c->sftp = libssh2_sftp_init(c->s);
				if (c->sftp == NULL) {
					rc = libssh2_session_last_errno(c->s);
					return rc == LIBSSH2_ERROR_EAGAIN ? 0 : (rc ? rc : -1);
				}
			}
			op->phase = P_START;
			break;
		case P_START:
			if (op->kind == OP_EXEC || op->kind == OP_KILL) {
				rc = libssh2_channel_exec(op->ch, op->cmd);
				if (rc == LIBSSH2_ERROR_EAGAIN)
					return 0;
				if (rc != 0)
					return rc;
			} else {
				unsigned long fl = op->kind == OP_UPLOAD
				                           ? LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT |
				                                     LIBSSH2_FXF_TRUNC
				                           : LIBSSH2_FXF_READ;

				op->fh = libssh2_sftp_open_ex(
				        c->sftp, op->path, (unsigned)strlen(op->path), fl,
				        (long)op->mode, LIBSSH2_SFTP_OPENFILE);
				if (op->fh == NULL) {
					rc = libssh2_session_last_errno(c->s);
					if (rc == LIBSSH2_ERROR_EAGAIN)
						return 0;
					if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
						op_complete(e, h, op, sftp_code(c->sftp));
						return 0;
					}
					return rc;
				}
			}
			op->phase = P_IO;
			break;
		case P_IO:
			if (op->kind == OP_EXEC || op->kind == OP_KILL) {
				while (op->pos < op->len) {
					n = libssh2_channel_write(op->ch,
					                          (const char *)op->data + op->pos,
					                          op->len - op->pos);
					if (n == LIBSSH2_ERROR_EAGAIN) {
						if (send_pending(c))
							return 0; /* see send_pending */
						break;            /* the channel window: read on */
					}
					if (n < 0)
						return (int)n;
					op->pos += (size_t)n;
				}
				if (op->pos >= op->len && !op->eof_sent) {
					rc = libssh2_channel_send_eof(op->ch);
					if (rc == 0)
						op->eof_sent = true;
					else if (rc != LIBSSH2_ERROR_EAGAIN)
						return rc;
					else if (send_pending(c))
						return 0;
				}
				rc = exec_read(e, h, op);
				if (h->st == H_DONE)
					return 0;
				if (rc < 0)
					return rc;
				if (rc == 0)
					return 0;
				op->phase = P_CLOSE;
			} else if (op->kind == OP_UPLOAD) {
				while (op->pos < op->len) {
					size_t chunk = op->len - op->pos;

					if (chunk > 65536)
						chunk = 65536;
					n = libssh2_sftp_write(
					        op->fh, (const char *)op->data + op->pos, chunk);
					if (n == LIBSSH2_ERROR_EAGAIN)
						return 0;
					if (n < 0) {
						if (n == LIBSSH2_ERROR_SFTP_PROTOCOL) {
							op->pos = (size_t)-2;
							op->phase = P_CLOSE;
							break;
						}
						return (int)n;
					}
					op->pos += (size_t)n;
				}
				if (op->phase == P_IO)
					op->phase = P_CLOSE;
			} else { /* OP_DOWNLOAD */
				if (download_blocked(e, h)) {
					c->more = false;
					return 0;
				}
				if (!op->statted) {
					/* Refuse an oversized file before reading any of it. */
					rc = libssh2_sftp_fstat_ex(op->fh, &attrs, 0);
					if (rc == LIBSSH2_ERROR_EAGAIN)
						return 0;
					op->statted = true;
					if (rc == 0 && (attrs.flags & LIBSSH2_SFTP_ATTR_SIZE) &&
					    attrs.filesize > op->max) {
						op->pos = (size_t)-1; /* marks "too large" */
						op->phase = P_CLOSE;
						break;
					}
				}
				for (;;) {
					n = libssh2_sftp_read(op->fh, (char *)e->buf,
					                      sizeof e->buf);
					if (n == LIBSSH2_ERROR_EAGAIN)
						return 0;
					if (n < 0) {
						if (n == LIBSSH2_ERROR_SFTP_PROTOCOL) {
							op->pos = (size_t)-2;
							op->phase = P_CLOSE;
							break;
						}
						return (int)n;
					}
					if (n == 0) {
						op->phase = P_CLOSE;
						break;
					}
					if (op->out.len + (size_t)n > op->max) {
						op->pos = (size_t)-1;
						op->phase = P_CLOSE;
						break;
					}
					om_buf_append(&op->out, e->buf, (size_t)n);
					e->dl_held += (size_t)n;
					if (op->out.err != 0) {
						op->pos = (size_t)-3;
						op->phase = P_CLOSE;
						break;
					}
				}
			}
			break;
		case P_CLOSE:
			if (op->kind == OP_EXEC || op->kind == OP_KILL) {
				rc = libssh2_channel_close(op->ch);
				if (rc == LIBSSH2_ERROR_EAGAIN)
					return 0;
				if (rc != 0)
					return rc;
				op->phase = P_WAIT;
			} else {
				rc = libssh2_sftp_close_handle(op->fh);
				if (rc == LIBSSH2_ERROR_EAGAIN)
					return 0;
				op->fh = NULL;
				if (op->pos == (size_t)-1)
					op_complete(e, h, op, OM_ERANGE);
				else if (op->pos == (size_t)-2)
					op_complete(e, h, op, sftp_code(c->sftp));
				else if (op->pos == (size_t)-3)
					op_complete(e, h, op, OM_ENOMEM);
				else
					op_complete(e, h, op, rc == 0 ? 0 : sftp_code(c->sftp));
				return 0;
			}
			break;
		case P_WAIT:
			rc = libssh2_channel_wait_closed(op->ch);
			if (rc == LIBSSH2_ERROR_EAGAIN)
				return 0;
			if (rc != 0)
				return rc;
			op_complete(e, h, op, 0);
			return 0;
		}
	}
}

/* The op is over: free its channel, then tell the plugin (or the abort logic for a kill). */
static void
op_complete(struct engine *e, struct hrun *h, struct op *op, int rc)
{
	struct om_exec_result res;
	char signame[32] = "";

	memset(&res, 0, sizeof res);
	res.exit_status = -1;
	if (op->ch != NULL) {
		if (rc == 0) {
			char *sig = NULL;
			size_t siglen = 0;

			libssh2_channel_get_exit_signal(op->ch, &sig, &siglen, NULL, NULL, NULL,
			                                NULL);
			if (sig != NULL) {
				snprintf(signame, sizeof signame, "%.*s",
				         (int)(siglen < 31 ? siglen : 31), sig);
				sanitize(signame);
				libssh2_free(h->c->s, sig);
				res.signal = signame;
			} else {
				res.exit_status = libssh2_channel_get_exit_status(op->ch);
			}
		}
		libssh2_channel_free(op->ch);
		op->ch = NULL;
	} else if (op->sim_h != NULL && rc == 0) {
		res.exit_status = 0; /* the sim connector: every command succeeds */
	}
	if (op == h->kill) {
		h->kill = NULL;
		op_free(op);
		return;
	}
	h->op = NULL;
	if (h->abort != 0)
		rc = abort_rc(h);
	h->used = true;
	h->in_callback = true;
	if (op->kind == OP_EXEC) {
		if (op->held.len > 0) {
			size_t n = op->held.len;

			op->held.len = 0;
			exec_emit(e, h, op, OM_STREAM_STDERR, op->held.data, n);
		}
		if (op->linelen > 0) /* a last partial stderr line */
			exec_emit(e, h, op, OM_STREAM_STDERR, (const uint8_t *)op->line,
			          op->linelen);
		res.out = op->out.data;
		res.out_len = op->out.len;
		res.err = op->err.data;
		res.err_len = op->err.len;
		res.truncated = op->truncated;
		op->ecb((struct om_host_ctx *)h, op->arg, rc, rc == 0 || h->abort ? &res : NULL);
	} else if (op->kind == OP_DOWNLOAD) {
		op->xcb((struct om_host_ctx *)h, op->arg, rc, rc == 0 ? op->out.data : NULL,
		        rc == 0 ? op->out.len : 0);
	} else {
		op->xcb((struct om_host_ctx *)h, op->arg, rc, NULL, 0);
	}
	h->in_callback = false;
	op_free(op);
	host_settle(e, h);
}

/*
 * Ends an op whose session is gone (its channel and handle went with it):
 * the plugin's callback with rc and no result, then the op is freed.
 */
static void
op_fail(struct hrun *h, struct op *op, int rc)
{
	op->ch = NULL;
	op->fh = NULL;
	h->in_callback = true;
	if (op->kind == OP_EXEC)
		op->ecb((struct om_host_ctx *)h, op->arg, rc, NULL);
	else
		op->xcb((struct om_host_ctx *)h, op->arg, rc, NULL, 0);
	h->in_callback = false;
	op_free(op);
}

/*
 * Stops whatever runs: ops in flight end with the abort code and the
 * session is dropped (it may hold a half-read channel).
 */
static void
host_abort_ops(struct engine *e, struct hrun *h)
{
	struct op *op = h->op, *k = h->kill;

	h->op = NULL;
	h->kill = NULL;
	if (h->c != NULL)
		conn_kill(e, h->c, false); /* frees every channel with the session */
	if (k != NULL) {
		k->ch = NULL;
		op_free(k);
	}
	if (op != NULL) {
		/* Exactly one callback per started op, also after the plugin finished. */
		if (h->st != H_DONE)
			op_fail(h, op, abort_rc(h));
		else
			op_free(op);
	}
}

static char *build_kill(struct engine *e, struct hrun *h, long pid);

/* Cancel or timeout of a host that runs its module. */
static void
host_abort(struct engine *e, struct hrun *h, int why)
{
	if (h->abort != 0 || h->st == H_DONE)
		return;
	h->abort = why;
	h->abort_deadline = om_now_ms() + e->o.kill_grace_ms + ABORT_EXTRA_MS;
	if (h->op != NULL && h->op->kind == OP_EXEC && h->op->pid > 1 && h->c != NULL &&
	    h->c->st == C_READY) {
		struct op *k = om_calloc(1, sizeof *k);

		if (k != NULL && (k->cmd = build_kill(e, h, h->op->pid)) != NULL) {
			k->kind = OP_KILL;
			k->phase = P_OPEN;
			om_buf_init(&k->out, 1);
			om_buf_init(&k->err, 1);
			h->kill = k;
			return; /* the command's channel closes once the group is dead */
		}
		op_free(k);
	}
	/* Nothing to kill by pid: drop the session, the op ends with the abort code. */
	host_abort_ops(e, h);
	host_settle(e, h);
}

/* ---------------------------------------------------------- host lifecycle */

/* Doubling per try, in 64 bits, capped at a minute. */
static int64_t
backoff_ms(const struct engine *e, unsigned tries)
{
	int64_t b = (int64_t)e->o.retry_backoff_ms << (tries < 16 ? tries : 16);

	return b < 60000 ? b : 60000;
}

static void
host_connect_failed(struct engine *e, struct hrun *h, int state, bool transient, const char *fmt,
                    ...)
{
	char reason[REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	sanitize(reason);
	if (h->c != NULL) {
		conn_kill(e, h->c, false);
		h->c = NULL;
	}
	if (transient && h->tries < e->o.connect_retries && h->abort == 0 &&
	    (h->deadline == 0 || om_now_ms() + backoff_ms(e, h->tries) < h->deadline)) {
		h->retry_at = om_now_ms() + backoff_ms(e, h->tries);
		h->tries++;
		h->st = H_RETRY_WAIT;
		om_debug("%s: %s; retry %u in %u ms", h->t->task.hosts[h->idx].name, reason,
		         h->tries, (unsigned)backoff_ms(e, h->tries - 1));
		return;
	}
	if (h->tries > 0)
		host_end(e, h, state, -1, "%s (after %u tries)", reason, h->tries + 1);
	else
		host_end(e, h, state, -1, "%s", reason);
}

static void
host_connected(struct engine *e, struct hrun *h)
{
	struct trun *t = h->t;
	int rc;

	h->st = H_MODULE;
	if (h->op != NULL) {
		/* A stale pooled session failed the first op: resume it on the new one. */
		h->op->phase = P_OPEN;
		h->op->deadline = om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;
		return;
	}
	h->in_callback = true;
	rc = t->task.module->desc->host_start(t->task.module->state, (struct om_host_ctx *)h);
	h->in_callback = false;
	if (rc != 0 && !h->finished) {
		h->finished = true;
		h->fstate = OM_HS_FAILED;
		h->fexit = -1;
		om_free(h->freason);
		h->freason = om_strdup("module could not start on this host");
	}
	if (!h->finished && h->op == NULL) {
		h->finished = true;
		h->fstate = OM_HS_FAILED;
		h->fexit = -1;
		om_free(h->freason);
		h->freason = om_strdup("module started no operation and did not finish");
	}
	host_settle(e, h);
}

/* Room for one more session: below the cap, or an idle one to close for it. */
static bool
session_slot(struct engine *e)
{
	if (e->nconns < e->o.max_sessions)
		return true;
	if (e->lru_head == NULL)
		return false;
	conn_kill(e, e->lru_head, true); /* the least recently used idle session */
	return true;
}

/* Takes a pooled session or opens one.  false: no session slot free now. */
static bool
host_start(struct engine *e, struct hrun *h)
{
	const struct om_ssh_target *t = &h->t->task.hosts[h->idx];
	char key[sizeof(((struct conn *)0)->key)];
	struct conn *c;

	if (t->addr == NULL || t->addr[0] == '\0' || t->user == NULL || t->user[0] == '\0') {
		h->t0 = om_now_ms();
		h->st = H_CONNECTING; /* counted active: host_end undoes it */
		h->t->active++;
		atomic_fetch_add(&e->st_active, 1);
		host_end(e, h, OM_HS_FAILED, -1, "invalid target: address and user required");
		return true;
	}
	if (e->o.sim.on) {
		/* The sim connector: every host is connected at once, no session. */
		h->t0 = om_now_ms();
		if (h->t->task.timeout_s > 0)
			h->deadline = h->t0 + (int64_t)h->t->task.timeout_s * 1000;
		h->t->active++;
		atomic_fetch_add(&e->st_active, 1);
		host_connected(e, h);
		return true;
	}
	make_key(t, key, sizeof key);
	c = pool_take(e, key);
	if (c == NULL && !session_slot(e))
		return false;
	h->t0 = om_now_ms();
	if (h->t->task.timeout_s > 0)
		h->deadline = h->t0 + (int64_t)h->t->task.timeout_s * 1000;
	h->t->active++;
	atomic_fetch_add(&e->st_active, 1);
	if (c != NULL) {
		c->owner = h;
		c->t = t;
		h->c = c;
		h->reused = true;
		atomic_fetch_add(&e->st_reused, 1);
		host_connected(e, h);
		return true;
	}
	kh_refresh(e);
	key_refresh(e);
	conn_start(e, h);
	return true;
}

/*
 * The session broke (or stopped answering) under an operation: the op ends
 * with an error, the session is dropped, and the host is unreachable unless
 * the plugin finished it otherwise.
 */
static void
host_op_lost(struct engine *e, struct hrun *h, const char *why)
{
	struct op *op = h->op;
	char reason[REASON_MAX];

	snprintf(reason, sizeof reason, "%s", why);
	sanitize(reason);
	h->lost = true; /* the plugin's error callback may not start another op */
	h->op = NULL;
	if (h->c != NULL)
		conn_kill(e, h->c, false);
	op_fail(h, op, h->abort ? abort_rc(h) : OM_EIO);
	/* Whatever the plugin concluded from the error, the host was lost: say why. */
	h->finished = true;
	om_free(h->freason);
	h->freason = om_strdup(reason);
	h->fstate = OM_HS_UNREACHABLE;
	h->fexit = -1;
	host_settle(e, h);
}

/* Steps the ops of a host whose session had an event. */
static void
host_step(struct engine *e, struct hrun *h)
{
	struct op *only = NULL;
	int rc;

	/* An op whose packet is half sent goes alone until it is out (see send_pending). */
	if (h->c != NULL && h->c->send_owner != NULL) {
		only = h->c->send_owner;
		h->c->send_owner = NULL;
		if ((only != h->op && only != h->kill) || !send_pending(h->c))
			only = NULL;
	}
	if (h->kill != NULL && h->c != NULL && (only == NULL || only == h->kill)) {
		rc = op_step(e, h, h->kill);
		if (rc != 0 && h->kill != NULL) {
			/* The kill channel failed: drop the session instead. */
			host_abort_ops(e, h);
			host_settle(e, h);
			return;
		}
		if (h->kill != NULL && h->c != NULL && send_pending(h->c)) {
			h->c->send_owner = h->kill;
			return;
		}
	}
	if (h->op == NULL || h->c == NULL || h->st != H_MODULE || (only != NULL && only != h->op))
		return;
	rc = op_step(e, h, h->op);
	if (rc == 0) {
		if (h->op != NULL && h->c != NULL && h->st != H_DONE && send_pending(h->c))
			h->c->send_owner = h->op;
		return;
	}
	if (h->op == NULL || h->st == H_DONE)
		return;
	{
		char where[300], reason[REASON_MAX];

		snprintf(where, sizeof where, "%s", h->c ? h->c->where : "?");
		if (h->reused && !h->used && h->op->phase == P_OPEN && h->abort == 0) {
			/* The pooled session died while idle: reconnect once, transparently. */
			om_debug("%s: pooled session is gone (%s), reconnecting", where,
			         session_error(h->c->s));
			conn_kill(e, h->c, false);
			h->c = NULL;
			h->reused = false;
			h->used = true;
			conn_start(e, h);
			return;
		}
		snprintf(reason, sizeof reason, "connection to %s lost: %s", where,
		         h->c ? session_error(h->c->s) : "closed");
		host_op_lost(e, h, reason);
	}
}

/* Points epoll at the direction libssh2 waits for. */
static void
conn_arm_busy(struct conn *c)
{
	uint32_t want = 0;
	int dir;

	if (c->fd < 0 || c->s == NULL) {
		if (c->st == C_CONNECT)
			conn_arm(c, EPOLLOUT);
		return; /* resolving: no socket yet */
	}
	if (c->st == C_CONNECT) {
		want = EPOLLOUT;
	} else if (c->owner != NULL && c->owner->op != NULL && c->owner->op->phase == P_IO &&
	           ((c->owner->op->kind == OP_EXEC && op_paused(c->e, c->owner, c->owner->op) &&
	             c->owner->op->pid_done) ||
	            (c->owner->op->kind == OP_DOWNLOAD && download_blocked(c->e, c->owner)))) {
		want = EPOLLRDHUP; /* output paused: no wakeups for data we will not read */
	} else {
		dir = libssh2_session_block_directions(c->s);
		if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
			want |= EPOLLIN;
		if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			want |= EPOLLOUT;
		if (want == 0)
			want = EPOLLIN;
	}
	conn_arm(c, want);
}

static void
conn_event(struct engine *e, struct conn *c, uint32_t events)
{
	if (c->st == C_DEAD)
		return;
	if (c->in_pool) {
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_kill(e, c, false); /* the host went away while idle */
		return;
	}
	if (c->owner == NULL)
		return;
	if (c->st != C_READY) {
		conn_connect_step(e, c, events);
		return;
	}
	/* Level-triggered: an unread hang-up would wake the loop at once, forever. */
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->peer_gone = true;
	host_step(e, c->owner);
}

/* For messages: what an operation waits for in its current phase. */
static const char *
phase_name(const struct op *op)
{
	bool ex = op->kind == OP_EXEC || op->kind == OP_KILL;

	switch (op->phase) {
	case P_OPEN:
		return ex ? "opening a channel" : "starting SFTP";
	case P_START:
		return ex ? "starting the command" : "opening the remote file";
	case P_IO:
		return ex ? "reading output" : "transferring the file";
	default:
		return ex ? "closing the channel" : "closing the remote file";
	}
}

/* ------------------------------------------------------------------ tasks */

static void
task_free(struct trun *t)
{
	size_t i;

	for (i = 0; i < t->nfiles; i++) {
		om_free(t->files[i].data);
		om_free(t->files[i].name);
	}
	om_free(t->files);
	om_free(t->h);
	om_free(t);
}

static void
task_cancel(struct engine *e, struct trun *t)
{
	size_t i;

	for (i = 0; i < t->task.n; i++) {
		struct hrun *h = &t->h[i];

		switch (h->st) {
		case H_QUEUED:
			host_end(e, h, OM_HS_CANCELLED, -1, "cancelled before it started");
			break;
		case H_CONNECTING:
		case H_RETRY_WAIT:
			host_end(e, h, OM_HS_CANCELLED, -1, "cancelled while connecting");
			break;
		case H_MODULE:
			host_abort(e, h, OM_HS_CANCELLED);
			break;
		case H_DONE:
			break;
		}
	}
	t->next = t->task.n;
}

/* Starts hosts while tasks have forks free and sessions are available. */
static void
task_schedule(struct engine *e)
{
	struct trun *t;
	bool progress = true;

	/* Round-robin, one host per task per pass, so one big task cannot starve the others. */
	while (progress) {
		progress = false;
		for (t = e->tasks; t != NULL; t = t->tnext) {
			if (t->next >= t->task.n || t->active >= t->forks)
				continue;
			if (!host_start(e, &t->h[t->next]))
				return; /* no session slot: wait for one to come free */
			t->next++;
			progress = true;
		}
	}
}

static void
tasks_reap(struct engine *e)
{
	struct trun **pp = &e->tasks;

	while (*pp != NULL) {
		struct trun *t = *pp;

		if (t->ndone < t->task.n) {
			pp = &t->tnext;
			continue;
		}
		*pp = t->tnext;
		atomic_fetch_sub(&e->st_tasks, 1);
		t->cb.finished(t->cb.arg);
		task_free(t);
	}
}

/* Deadlines of every host and session; returns ms until the next one (at most TICK_MS). */
static void
timers(struct engine *e)
{
	int64_t now = om_now_ms();
	struct trun *t;
	struct conn *c, *cn;
	size_t i;

	for (t = e->tasks; t != NULL; t = t->tnext) {
		for (i = 0; i < t->next && i < t->task.n; i++) {
			struct hrun *h = &t->h[i];

			switch (h->st) {
			case H_RETRY_WAIT:
				if (h->deadline != 0 && now >= h->deadline)
					host_end(e, h, OM_HS_TIMEOUT, -1,
					         "timed out after %u s while connecting",
					         t->task.timeout_s);
				else if (now >= h->retry_at && session_slot(e))
					conn_start(e, h);
				break;
			case H_CONNECTING:
				if (h->deadline != 0 && now >= h->deadline) {
					host_end(e, h, OM_HS_TIMEOUT, -1,
					         "timed out after %u s while connecting",
					         t->task.timeout_s);
				} else if (h->c != NULL && h->c->step_deadline != 0 &&
				           now >= h->c->step_deadline) {
					struct conn *hc = h->c;

					if (hc->st == C_RESOLVE)
						host_connect_failed(e, h, OM_HS_UNREACHABLE, true,
						                    "cannot resolve '%s': no "
						                    "answer within %u s",
						                    t->task.hosts[i].addr,
						                    e->o.connect_timeout_s);
					else if (hc->st == C_CONNECT)
						host_connect_failed(
						        e, h, OM_HS_UNREACHABLE, true,
						        "connect to %s: timed out after %u s",
						        hc->where, e->o.connect_timeout_s);
					else if (hc->st == C_HANDSHAKE)
						host_connect_failed(e, h, OM_HS_UNREACHABLE, true,
						                    "ssh handshake failed: no "
						                    "answer from %s within %u s",
						                    hc->where,
						                    e->o.connect_timeout_s);
					else
						host_connect_failed(
						        e, h, OM_HS_TIMEOUT, false,
						        "authentication on %s timed out after %u s",
						        hc->where, e->o.connect_timeout_s);
				}
				break;
			case H_MODULE:
				if (h->abort == 0 && h->deadline != 0 && now >= h->deadline) {
					host_abort(e, h, OM_HS_TIMEOUT);
				} else if (h->abort == 0 && h->op != NULL && h->op->deadline != 0 &&
				           now >= h->op->deadline) {
					char why[REASON_MAX];

					snprintf(why, sizeof why,
					         "no answer from %s within %u s while %s",
					         h->c ? h->c->where : "the host",
					         e->o.connect_timeout_s, phase_name(h->op));
					host_op_lost(e, h, why);
				} else if (h->abort != 0 && now >= h->abort_deadline) {
					host_abort_ops(e, h);
					host_settle(e, h);
				}
				break;
			default:
				break;
			}
		}
	}
	/* Pooled sessions: expire the idle, keep the rest alive. */
	for (c = e->lru_head; c != NULL; c = cn) {
		cn = c->lnext;
		if (now - c->last_used >= (int64_t)e->o.idle_s * 1000) {
			conn_kill(e, c, true);
			continue;
		}
		if (now >= c->next_keepalive) {
			int next = 0;

			libssh2_keepalive_send(c->s, &next);
			c->next_keepalive = now + (int64_t)e->o.keepalive_s * 1000;
		}
	}
}

/* ------------------------------------------------------------------ loop */

static void
commands(struct engine *e)
{
	struct cmd *q, *n;
	struct trun *t;

	pthread_mutex_lock(&e->lock);
	q = e->cmds;
	e->cmds = e->cmds_tail = NULL;
	pthread_mutex_unlock(&e->lock);
	for (; q != NULL; q = n) {
		n = q->next;
		if (q->kind == CMD_SUBMIT) {
			/* Append: tasks start in arrival order. */
			struct trun **pp = &e->tasks;

			while (*pp != NULL)
				pp = &(*pp)->tnext;
			*pp = q->t;
			kh_refresh(e);
		} else if (q->kind == CMD_RESOLVED) {
			resolved(e, q->rs);
		} else {
			for (t = e->tasks; t != NULL; t = t->tnext)
				if (t->task.id == q->id)
					task_cancel(e, t);
		}
		om_free(q);
	}
}

/*
 * The sim connector: completes the simulated ops that are due.  An exec
 * streams output_bytes of om_sim_fill on stdout (in READ_BUF pieces, as
 * reads would) and exits 0; an upload succeeds; a download finds no file.
 * While output is paused a streamed exec waits, as a session would not be
 * read.
 */
static void
sim_fire(struct engine *e)
{
	struct om_sim_timer *tm;
	int64_t now = om_now_ms();

	while ((tm = om_sim_queue_pop(&e->simq, now)) != NULL) {
		struct op *op = (struct op *)(void *)((char *)tm - offsetof(struct op, sim));
		struct hrun *h = op->sim_h;
		int rc = 0;

		if (op->kind == OP_EXEC) {
			const char *name = h->t->task.hosts[h->idx].name;
			size_t off, n, total = e->o.sim.output_bytes;

			if (op_paused(e, h, op) && total > 0) {
				om_sim_queue_add(&e->simq, &op->sim, now + TICK_MS);
				continue;
			}
			for (off = 0; off < total; off += n) {
				n = total - off < READ_BUF ? total - off : READ_BUF;
				om_sim_fill(name, off, e->buf, n);
				exec_emit(e, h, op, OM_STREAM_STDOUT, e->buf, n);
			}
		} else if (op->kind == OP_DOWNLOAD) {
			rc = OM_ENOTFOUND;
		}
		op_complete(e, h, op, rc);
	}
}

static void *
loop_main(void *arg)
{
	struct engine *e = arg;
	struct epoll_event evs[MAX_EVENTS];
	int64_t last_sweep = om_now_ms(), now;
	bool closing = false;
	struct conn *c, *cn;
	int nev, k, wait_ms;

	for (;;) {
		bool more = false;

		commands(e);
		pthread_mutex_lock(&e->lock);
		closing = e->closing;
		pthread_mutex_unlock(&e->lock);
		e->loop_closing = closing;
		if (closing) {
			struct trun *t;

			/* Every pass: a task submitted just before the close arrives late. */
			commands(e);
			for (t = e->tasks; t != NULL; t = t->tnext)
				task_cancel(e, t);
		}
		if (!closing)
			task_schedule(e);
		tasks_reap(e);
		if (closing && e->tasks == NULL)
			break;
		for (c = e->conns; c != NULL; c = c->next) {
			if (c->in_pool || c->st == C_DEAD)
				continue;
			conn_arm_busy(c);
			more |= c->more;
		}
		wait_ms = more ? 0 : TICK_MS;
		if (e->simq.head != NULL) {
			int64_t sw = om_sim_queue_wait(&e->simq, om_now_ms());

			if (sw < wait_ms)
				wait_ms = (int)sw;
		}
		nev = epoll_wait(e->ep, evs, MAX_EVENTS, wait_ms);
		if (nev < 0 && errno != EINTR) {
			om_err("ssh engine: epoll_wait: %s", strerror(errno));
			usleep(10000);
			nev = 0;
		}
		for (k = 0; k < nev; k++) {
			if (evs[k].data.ptr == NULL) {
				uint64_t v;
				ssize_t r = read(e->evfd, &v, sizeof v);

				(void)r;
				continue;
			}
			c = evs[k].data.ptr;
			if (c->st == C_DEAD)
				continue;
			c->more = false;
			conn_event(e, c, evs[k].events);
		}
		/*
		 * libssh2 may hold data that no socket event will announce (a
		 * read budget spent); those sessions go now.  Every tick all busy
		 * sessions are stepped as a backstop: a step that finds nothing
		 * costs one recv() answering EAGAIN.
		 */
		if (e->simq.head != NULL)
			sim_fire(e);
		now = om_now_ms();
		bool sweep = now - last_sweep >= TICK_MS;
		if (sweep) {
			last_sweep = now;
			timers(e);
		}
		for (c = e->conns; c != NULL; c = cn) {
			cn = c->next;
			if (c->in_pool || c->st != C_READY || c->owner == NULL)
				continue;
			if (c->more || sweep) {
				c->more = false;
				host_step(e, c->owner);
			}
		}
		graveyard_free(e);
	}
	/* Closing: every pooled session goes. */
	while (e->conns != NULL)
		conn_kill(e, e->conns, true);
	graveyard_free(e);
	return NULL;
}

/* -------------------------------------------------------------- public API */

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
om_engine_open(const struct om_engine_opts *opts, struct om_engine **out)
{
	struct engine *e;
	struct epoll_event ev;
	int rc;

	*out = NULL;
	if (opts == NULL)
		return OM_EINVAL;
	if (!opts->sim.on &&
	    ((rc = file_check(opts->privkey)) != 0 || (rc = file_check(opts->known_hosts)) != 0))
		return rc;
	if ((e = om_calloc(1, sizeof *e)) == NULL)
		return OM_ENOMEM;
	e->o = *opts;
	if (e->o.max_sessions == 0)
		e->o.max_sessions = 1000;
	if (e->o.idle_s == 0)
		e->o.idle_s = 60;
	if (e->o.keepalive_s == 0)
		e->o.keepalive_s = 15;
	if (e->o.connect_timeout_s == 0)
		e->o.connect_timeout_s = 10;
	if (e->o.retry_backoff_ms == 0)
		e->o.retry_backoff_ms = 250;
	if (e->o.kill_grace_ms == 0)
		e->o.kill_grace_ms = 2000;
	if (e->o.max_output == 0)
		e->o.max_output = OM_ENGINE_MAX_OUTPUT;
	e->ep = e->evfd = -1;
	pthread_mutex_init(&e->lock, NULL);
	rc = OM_ENOMEM;
	if ((e->resolver = om_calloc(1, sizeof *e->resolver)) == NULL)
		goto fail;
	pthread_mutex_init(&e->resolver->mu, NULL);
	pthread_cond_init(&e->resolver->cv, NULL);
	e->resolver->e = e;
	e->resolver->refs = 1; /* the engine's */
	if ((e->kh_session = libssh2_session_init()) == NULL)
		goto fail;
	if (!e->o.sim.on && (rc = kh_load(e)) != 0)
		goto fail;
	key_refresh(e);
	rc = OM_ESYS;
	if ((e->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		goto fail;
	if ((e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto fail;
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, e->evfd, &ev) != 0)
		goto fail;
	if (pthread_create(&e->thread, NULL, loop_main, e) != 0)
		goto fail;
	*out = (struct om_engine *)e;
	return 0;
fail:
	if (e->evfd >= 0)
		close(e->evfd);
	if (e->ep >= 0)
		close(e->ep);
	if (e->kh != NULL)
		libssh2_knownhost_free(e->kh);
	if (e->kh_session != NULL)
		libssh2_session_free(e->kh_session);
	om_sshkey_free(e->key);
	if (e->resolver != NULL)
		resolver_unref(e->resolver); /* no thread yet: the only reference */
	pthread_mutex_destroy(&e->lock);
	om_free(e);
	return rc;
}

static int
post(struct engine *e, struct cmd *c)
{
	pthread_mutex_lock(&e->lock);
	if (e->closing) {
		pthread_mutex_unlock(&e->lock);
		return OM_ECLOSED;
	}
	c->next = NULL;
	if (e->cmds_tail)
		e->cmds_tail->next = c;
	else
		e->cmds = c;
	e->cmds_tail = c;
	pthread_mutex_unlock(&e->lock);
	wakeup(e);
	return 0;
}

int
om_engine_submit(struct om_engine *oe, const struct om_engine_task *task,
                 const struct om_engine_cb *cb)
{
	struct engine *e = (struct engine *)oe;
	struct trun *t;
	struct cmd *c;
	size_t i;
	int rc;

	if (e == NULL || task == NULL || cb == NULL || cb->output == NULL || cb->done == NULL ||
	    cb->finished == NULL || task->module == NULL || task->module->desc == NULL ||
	    task->module->desc->host_start == NULL || (task->hosts == NULL && task->n > 0))
		return OM_EINVAL;
	if ((t = om_calloc(1, sizeof *t)) == NULL)
		return OM_ENOMEM;
	if ((t->h = om_calloc(task->n + 1, sizeof *t->h)) == NULL ||
	    (c = om_calloc(1, sizeof *c)) == NULL) {
		om_free(t->h);
		om_free(t);
		return OM_ENOMEM;
	}
	t->e = e;
	t->task = *task;
	t->cb = *cb;
	t->forks = task->forks ? task->forks : 100;
	for (i = 0; i < task->n; i++) {
		t->h[i].t = t;
		t->h[i].idx = i;
	}
	c->kind = CMD_SUBMIT;
	c->t = t;
	if ((rc = post(e, c)) != 0) {
		om_free(c);
		task_free(t);
		return rc;
	}
	atomic_fetch_add(&e->st_tasks, 1);
	return 0;
}

void
om_engine_cancel(struct om_engine *oe, uint64_t id)
{
	struct engine *e = (struct engine *)oe;
	struct cmd *c;

	if (e == NULL || (c = om_calloc(1, sizeof *c)) == NULL)
		return;
	c->kind = CMD_CANCEL;
	c->id = id;
	if (post(e, c) != 0)
		om_free(c);
}

void
om_engine_pause(struct om_engine *oe, bool paused)
{
	struct engine *e = (struct engine *)oe;

	if (e == NULL)
		return;
	if (atomic_exchange(&e->paused, paused) != paused && !paused)
		wakeup(e);
}

void
om_engine_stats(struct om_engine *oe, struct om_engine_stats *out)
{
	struct engine *e = (struct engine *)oe;

	memset(out, 0, sizeof *out);
	if (e == NULL)
		return;
	out->logins = atomic_load(&e->st_logins);
	out->reused = atomic_load(&e->st_reused);
	out->sessions = atomic_load(&e->st_sessions);
	out->idle = atomic_load(&e->st_idle);
	out->tasks = atomic_load(&e->st_tasks);
	out->hosts_active = atomic_load(&e->st_active);
}

void
om_engine_shutdown(struct om_engine *oe)
{
	struct engine *e = (struct engine *)oe;
	bool join;

	if (e == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	e->closing = true;
	join = !e->joined;
	e->joined = true;
	pthread_mutex_unlock(&e->lock);
	if (!join)
		return;
	wakeup(e);
	pthread_join(e->thread, NULL);
}

void
om_engine_close(struct om_engine *oe)
{
	struct engine *e = (struct engine *)oe;
	struct cmd *q;

	if (e == NULL)
		return;
	om_engine_shutdown(oe);
	/* Lookups still running answer into nothing; the last thread out frees the resolver. */
	pthread_mutex_lock(&e->resolver->mu);
	e->resolver->e = NULL;
	pthread_cond_broadcast(&e->resolver->cv);
	pthread_mutex_unlock(&e->resolver->mu);
	resolver_unref(e->resolver);
	/* Commands that raced with closing. */
	while ((q = e->cmds) != NULL) {
		e->cmds = q->next;
		if (q->kind == CMD_SUBMIT)
			task_free(q->t);
		else if (q->kind == CMD_RESOLVED)
			resolve_free(q->rs);
		om_free(q);
	}
	close(e->evfd);
	close(e->ep);
	if (e->kh != NULL) /* NULL under the sim connector */
		libssh2_knownhost_free(e->kh);
	libssh2_session_free(e->kh_session);
	om_sshkey_free(e->key);
	while (e->key_old != NULL) {
		struct keyref *k = e->key_old;

		e->key_old = k->next;
		om_sshkey_free(k->k);
		om_free(k);
	}
	pthread_mutex_destroy(&e->lock);
	om_free(e);
}

/* --------------------------------------------------------------- host API */

#define HR(ctx) ((struct hrun *)(void *)(ctx))

static bool
api_usable(struct hrun *h)
{
	return h != NULL && h->st == H_MODULE && !h->finished && h->abort == 0 && !h->lost;
}

static const char *
api_param(struct om_host_ctx *ctx, const char *name)
{
	struct hrun *h = HR(ctx);
	const struct om_engine_task *t;
	const struct om_plugin *d;
	size_t i;

	if (h == NULL || name == NULL)
		return NULL;
	t = &h->t->task;
	for (i = 0; i < t->nparams; i++)
		if (strcmp(t->params[i].key, name) == 0)
			return t->params[i].val;
	d = t->module->desc;
	for (i = 0; i < d->nparams; i++)
		if (strcmp(d->params[i].name, name) == 0)
			return d->params[i].default_value;
	return NULL;
}

/* Decoded once per task: 500 hosts copying one file decode it once. */
static int
api_param_bytes(struct om_host_ctx *ctx, const char *name, const uint8_t **data, size_t *len)
{
	struct hrun *h = HR(ctx);
	struct trun *t;
	struct filecache *fc, *grown;
	const char *v;
	size_t i, vl;
	int n;

	if (h == NULL || name == NULL || data == NULL || len == NULL)
		return OM_EINVAL;
	t = h->t;
	for (i = 0; i < t->nfiles; i++)
		if (strcmp(t->files[i].name, name) == 0) {
			*data = t->files[i].data;
			*len = t->files[i].len;
			return t->files[i].rc;
		}
	if ((v = api_param(ctx, name)) == NULL)
		return OM_ENOTFOUND;
	if ((grown = om_realloc(t->files, (t->nfiles + 1) * sizeof *grown)) == NULL)
		return OM_ENOMEM;
	t->files = grown;
	fc = &t->files[t->nfiles++];
	memset(fc, 0, sizeof *fc);
	fc->name = om_strdup(name);
	if (fc->name == NULL) {
		t->nfiles--;
		return OM_ENOMEM;
	}
	vl = strlen(v);
	if ((fc->data = om_malloc(vl / 4 * 3 + 4)) == NULL) {
		fc->rc = OM_ENOMEM;
	} else if (vl % 4 != 0 ||
	           (n = EVP_DecodeBlock(fc->data, (const unsigned char *)v, (int)vl)) < 0) {
		fc->rc = OM_EINVAL;
	} else {
		/* EVP_DecodeBlock counts the padding as data. */
		if (vl >= 1 && v[vl - 1] == '=')
			n--;
		if (vl >= 2 && v[vl - 2] == '=')
			n--;
		fc->len = (size_t)n;
	}
	*data = fc->data;
	*len = fc->len;
	return fc->rc;
}

static int
api_check_mode(struct om_host_ctx *ctx)
{
	struct hrun *h = HR(ctx);

	return h != NULL && h->t->task.check;
}

static const char *
api_host_name(struct om_host_ctx *ctx)
{
	struct hrun *h = HR(ctx);

	return h != NULL ? h->t->task.hosts[h->idx].name : NULL;
}

static long
api_quote(const char *s, char *out, size_t cap)
{
	struct om_buf b;
	long n;

	if (s == NULL || out == NULL || cap == 0)
		return OM_ERANGE;
	om_buf_init(&b, cap);
	if (om_shell_quote(&b, s, strlen(s)) != 0 || b.err != 0 || b.len + 1 > cap) {
		om_buf_release(&b);
		return OM_ERANGE;
	}
	memcpy(out, b.data, b.len);
	out[b.len] = '\0';
	n = (long)b.len;
	om_buf_release(&b);
	return n;
}

/*
 * The command line sent to the host.  It first prints the shell's pid (the
 * process group sshd made with setsid) on stderr, so cancel can kill the
 * whole group; become wraps the command in sudo -n; a task timeout also
 * runs it under timeout(1), which stops it on the host even when the
 * connection is gone.
 */
static char *
build_command(struct engine *e, struct hrun *h, const char *cmd, const char *const *argv,
              unsigned flags)
{
	const struct om_engine_task *t = &h->t->task;
	struct om_buf inner, outer;
	size_t i;
	char *res = NULL;

	(void)e;
	om_buf_init(&inner, OM_MAX_PARAM * 2);
	om_buf_init(&outer, OM_MAX_PARAM * 3);
	if (argv != NULL) {
		for (i = 0; argv[i] != NULL; i++) {
			if (i > 0)
				om_buf_putc(&inner, ' ');
			om_shell_quote(&inner, argv[i], strlen(argv[i]));
		}
	} else {
		om_buf_append(&inner, cmd, strlen(cmd));
	}
	/* exec: the command takes over the shell's pid, so no extra fork per command. */
	om_buf_printf(&outer, "printf '\\036om-pid %%s\\n' \"$$\" >&2; exec ");
	if (t->timeout_s > 0 && h->deadline > 0) {
		int64_t left = (h->deadline - om_now_ms()) / 1000 + 2;

		om_buf_printf(&outer, "timeout --foreground -k 2 %lld ",
		              (long long)(left > 1 ? left : 1));
	}
	if (t->become && !(flags & OM_EXEC_NO_BECOME)) {
		const char *u = t->become_user ? t->become_user : "root";

		om_buf_printf(&outer, "sudo -n -H -u ");
		om_shell_quote(&outer, u, strlen(u));
		om_buf_printf(&outer, " -- ");
	}
	if (t->timeout_s > 0 || (t->become && !(flags & OM_EXEC_NO_BECOME)) || argv == NULL) {
		om_buf_printf(&outer, "sh -c ");
		om_shell_quote(&outer, (const char *)inner.data, inner.len);
	} else {
		om_buf_append(&outer, inner.data, inner.len);
	}
	om_buf_putc(&outer, '\0');
	if (inner.err == 0 && outer.err == 0)
		res = om_strndup((const char *)outer.data, outer.len);
	om_buf_release(&inner);
	om_buf_release(&outer);
	return res;
}

/*
 * Kills the process group pid leads: TERM, then KILL after the grace.  No
 * "--" before the group: dash's kill refuses it, and every sh reads a
 * negative number after a signal as a group.
 */
static char *
build_kill(struct engine *e, struct hrun *h, long pid)
{
	const struct om_engine_task *t = &h->t->task;
	char script[512];
	struct om_buf b;
	char *res = NULL;

	snprintf(script, sizeof script,
	         "kill -TERM -%ld 2>/dev/null || exit 0; i=0; "
	         "while kill -0 -%ld 2>/dev/null; do "
	         "if [ $i -ge %u ]; then kill -KILL -%ld 2>/dev/null; exit 0; fi; "
	         "sleep 0.1; i=$((i+1)); done",
	         pid, pid, e->o.kill_grace_ms / 100, pid);
	om_buf_init(&b, 4096);
	if (t->become) {
		/* The command runs as another user: only sudo may signal it. */
		om_buf_printf(&b, "sudo -n sh -c ");
		om_shell_quote(&b, script, strlen(script));
	} else {
		om_buf_printf(&b, "%s", script);
	}
	om_buf_putc(&b, '\0');
	if (b.err == 0)
		res = om_strndup((const char *)b.data, b.len);
	om_buf_release(&b);
	return res;
}

/*
 * A new op for h, with its own copy of data (stdin or upload bytes): 0, or
 * OM_ECANCELED (the host is being stopped), OM_EINVAL (not running or
 * finished), OM_EBUSY (one operation at a time per host), OM_ENOMEM.
 */
static int
op_new(struct hrun *h, enum opkind kind, const void *data, size_t len, struct op **out)
{
	struct op *op;

	if (h->abort != 0)
		return OM_ECANCELED;
	if (!api_usable(h))
		return OM_EINVAL;
	if (h->op != NULL)
		return OM_EBUSY;
	if ((op = om_calloc(1, sizeof *op)) == NULL)
		return OM_ENOMEM;
	op->e = h->t->e;
	op->kind = kind;
	op->phase = P_OPEN;
	if (len > 0) {
		if ((op->data = om_malloc(len)) == NULL) {
			om_free(op);
			return OM_ENOMEM;
		}
		memcpy(op->data, data, len);
		op->len = len;
	}
	*out = op;
	return 0;
}

/* Makes op the host's operation; its first phase has the step deadline. */
static void
op_install(struct hrun *h, struct op *op)
{
	struct engine *e = h->t->e;

	h->op = op;
	if (e->o.sim.on) {
		/* The sim connector: the op completes after the latency (sim_fire). */
		op->sim_h = h;
		om_sim_queue_add(&e->simq, &op->sim, om_now_ms() + (int64_t)e->o.sim.latency_ms);
		return;
	}
	op->deadline = om_now_ms() + (int64_t)e->o.connect_timeout_s * 1000;
	if (h->c != NULL)
		h->c->more = true; /* start it on this loop iteration */
}

static int
api_exec(struct om_host_ctx *ctx, const char *cmd, const char *const *argv, const void *stdin_data,
         size_t stdin_len, unsigned flags, size_t cap, om_exec_cb cb, void *arg)
{
	struct hrun *h = HR(ctx);
	struct op *op;
	int rc;

	if (h == NULL || cb == NULL || (cmd == NULL) == (argv == NULL) ||
	    (stdin_data == NULL && stdin_len > 0) || stdin_len > OM_MAX_PARAM * 2)
		return OM_EINVAL;
	if ((rc = op_new(h, OP_EXEC, stdin_data, stdin_len, &op)) != 0)
		return rc;
	op->flags = flags;
	op->cap = cap ? cap : CAPTURE_DEFAULT;
	om_buf_init(&op->out, op->cap + 1);
	om_buf_init(&op->err, op->cap + 1);
	om_buf_init(&op->held, PID_SCAN_MAX + READ_BUF + sizeof op->line);
	op->ecb = cb;
	op->arg = arg;
	op->cmd = build_command(h->t->e, h, cmd, argv, flags);
	if (op->cmd == NULL) {
		op_free(op);
		return OM_ENOMEM;
	}
	op_install(h, op);
	return 0;
}

static int
xfer_start(struct hrun *h, enum opkind kind, const char *path, const void *data, size_t len,
           unsigned mode, size_t max, om_xfer_cb cb, void *arg)
{
	struct op *op;
	int rc;

	if (h == NULL || cb == NULL || path == NULL || path[0] == '\0' ||
	    (data == NULL && len > 0) || strlen(path) > 4096)
		return OM_EINVAL;
	if ((rc = op_new(h, kind, data, len, &op)) != 0)
		return rc;
	op->mode = mode;
	op->max = max;
	op->xcb = cb;
	op->arg = arg;
	om_buf_init(&op->out, kind == OP_DOWNLOAD ? max + 1 : 1);
	om_buf_init(&op->err, 1);
	if ((op->path = om_strdup(path)) == NULL) {
		op_free(op);
		return OM_ENOMEM;
	}
	op_install(h, op);
	return 0;
}

static int
api_upload(struct om_host_ctx *ctx, const char *remote_path, const void *data, size_t len,
           unsigned mode, om_xfer_cb cb, void *arg)
{
	if (len > OM_MAX_PARAM * 2)
		return OM_ERANGE;
	return xfer_start(HR(ctx), OP_UPLOAD, remote_path, data, len, mode & 07777, 0, cb, arg);
}

static int
api_download(struct om_host_ctx *ctx, const char *remote_path, size_t max, om_xfer_cb cb, void *arg)
{
	if (max == 0 || max > DOWNLOAD_MAX)
		max = DOWNLOAD_MAX;
	return xfer_start(HR(ctx), OP_DOWNLOAD, remote_path, NULL, 0, 0, max, cb, arg);
}

static void
api_emit(struct om_host_ctx *ctx, int stream, const void *data, size_t len)
{
	struct hrun *h = HR(ctx);

	if (h == NULL || h->st == H_DONE || data == NULL || len == 0 ||
	    (stream != OM_STREAM_STDOUT && stream != OM_STREAM_STDERR))
		return;
	host_output(h->t->e, h, stream, data, len);
}

static int
api_save_file(struct om_host_ctx *ctx, const char *name, const void *data, size_t len)
{
	struct hrun *h = HR(ctx);

	if (h == NULL || h->st == H_DONE || name == NULL || (data == NULL && len > 0))
		return OM_EINVAL;
	if (len > 0)
		h->t->cb.output(h->t->cb.arg, h->idx, OM_STREAM_FILE, data, len);
	return 0;
}

static int
api_set_result(struct om_host_ctx *ctx, const char *json, int changed)
{
	struct hrun *h = HR(ctx);
	json_error_t jerr;
	json_t *v;

	if (h == NULL || h->st == H_DONE || json == NULL)
		return OM_EINVAL;
	if (strlen(json) > OM_MAX_RESULT)
		return OM_ERANGE;
	/* Only a JSON object reaches the master. */
	v = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL || !json_is_object(v)) {
		json_decref(v);
		return OM_EINVAL;
	}
	json_decref(v);
	om_free(h->result);
	h->result = om_strdup(json);
	h->changed = changed != 0;
	return h->result != NULL ? 0 : OM_ENOMEM;
}

static void api_log(struct om_host_ctx *ctx, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
api_log(struct om_host_ctx *ctx, int level, const char *fmt, ...)
{
	struct hrun *h = HR(ctx);
	char msg[1024];
	va_list ap;

	if (h == NULL || fmt == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sanitize(msg);
	switch (level) {
	case 0:
		om_err("module '%s' on '%s': %s", h->t->task.module->desc->name,
		       h->t->task.hosts[h->idx].name, msg);
		break;
	case 1:
		om_warn("module '%s' on '%s': %s", h->t->task.module->desc->name,
		        h->t->task.hosts[h->idx].name, msg);
		break;
	case 2:
		om_info("module '%s' on '%s': %s", h->t->task.module->desc->name,
		        h->t->task.hosts[h->idx].name, msg);
		break;
	default:
		om_debug("module '%s' on '%s': %s", h->t->task.module->desc->name,
		         h->t->task.hosts[h->idx].name, msg);
		break;
	}
}

static void
api_finish(struct om_host_ctx *ctx, int state, int exit_code, const char *reason)
{
	struct hrun *h = HR(ctx);

	if (h == NULL || h->finished || h->st == H_DONE)
		return;
	if (state != OM_HS_OK && state != OM_HS_FAILED && state != OM_HS_UNREACHABLE)
		state = OM_HS_FAILED;
	h->finished = true;
	h->fstate = state;
	h->fexit = exit_code;
	om_free(h->freason);
	h->freason = NULL;
	if (reason != NULL) {
		h->freason = om_strndup(reason, strnlen(reason, REASON_MAX - 1));
		if (h->freason != NULL)
			sanitize(h->freason);
	} else if (state != OM_HS_OK) {
		h->freason = om_strdup("module reported failure");
	}
	host_settle(h->t->e, h);
}

static void *
api_alloc(struct om_host_ctx *ctx, size_t n)
{
	struct hrun *h = HR(ctx);
	struct arena_blk *b;

	if (h == NULL || h->st == H_DONE || n > OM_MAX_PARAM * 4)
		return NULL;
	if ((b = om_calloc(1, sizeof *b + n)) == NULL)
		return NULL;
	b->next = h->arena;
	h->arena = b;
	return b->data;
}

static const struct om_host_api host_api = {
        .api_version = OM_HOST_API_VERSION,
        .struct_size = sizeof(struct om_host_api),
        .param = api_param,
        .param_bytes = api_param_bytes,
        .check_mode = api_check_mode,
        .host_name = api_host_name,
        .exec = api_exec,
        .upload = api_upload,
        .download = api_download,
        .emit = api_emit,
        .save_file = api_save_file,
        .set_result = api_set_result,
        .log = api_log,
        .finish = api_finish,
        .alloc = api_alloc,
        .quote = api_quote,
};

const struct om_host_api *
om_engine_host_api(void)
{
	return &host_api;
}
