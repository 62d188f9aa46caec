/*
 * om-probe: speaks the real protocol with chosen identities, for the
 * permission and rogue-worker tests.  Not installed.
 *
 *   om-probe URL MASTER_KEY sweep-anon
 *       every type code 0..255 as the payload of a handshake (no identity):
 *       prints "CODE answered|refused|dropped"
 *   om-probe URL MASTER_KEY sweep-client TOKEN
 *   om-probe URL MASTER_KEY sweep-worker KEYFILE NAME IDC
 *       authenticate, then send {"t": CODE} for every code 0..255 in the
 *       session (re-authenticating after a refusal that ends it):
 *       prints "CODE answered TYPE|error CODE|dropped"
 *   om-probe URL MASTER_KEY hello KEYFILE NAME IDC [ENROLL_TOKEN]
 *       prints "welcome" or "refused: TEXT"
 *   om-probe URL MASTER_KEY report KEYFILE NAME IDC TASK_ID
 *   om-probe - - keygen KEYFILE
 *       creates a key file (mode 0600) if there is none
 *       reports host 0 of TASK_ID as ok; prints "ack" or "error: TEXT"
 *
 * Exit 0 when the probe ran (whatever the answers), 2 on usage errors.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "om/chan.h"
#include "om/mp.h"
#include "om/rpc.h"

/* Stay under the master's handshake rate limit (20/s by default). */
#define HANDSHAKE_PACE_US 60000

static uint8_t master_pub[OM_NOISE_KEYLEN];
static const char *url;

static struct om_rpc_client *
open_client(const struct om_msg *hello, const struct om_keypair *kp)
{
	struct om_rpc_client_opts o;
	struct om_rpc_client *c;

	memset(&o, 0, sizeof(o));
	o.url = url;
	o.pattern = kp ? OM_NOISE_IK : OM_NOISE_NK;
	o.local = kp;
	memcpy(o.master_pub, master_pub, OM_NOISE_KEYLEN);
	o.hello = hello;
	o.connect_timeout_ms = 2000;
	if (om_rpc_client_open(&c, &o) != 0) {
		fprintf(stderr, "om-probe: cannot open a client for %s\n", url);
		exit(1);
	}
	return c;
}

/* {"t": code} with no other field: what unknown codes get. */
static void
bare(struct om_buf *b, unsigned code)
{
	om_buf_init(b, 64);
	om_mpw_map(b, 1);
	om_mpw_cstr(b, "t");
	om_mpw_uint(b, code);
}

/*
 * A valid message of type code when the codec knows it (so the master's
 * permission table, not the decoder, decides), else a bare one.  The
 * values are harmless: selectors match nothing, ids do not exist, and the
 * one write a viewer could make (a token for itself) asks for a scope its
 * role does not allow.
 */
static void
build(struct om_buf *b, unsigned code)
{
	static char *groups[] = {"probe"};
	static char *scopes[] = {"admin"};
	struct om_kv kv = {"cmd", "true"};
	struct om_host host = {"probe-host", "127.0.0.1", NULL, "bj", 22, groups, 1};
	struct om_msg m;

	memset(&m, 0, sizeof(m));
	m.type = (enum om_msg_type)code;
	switch (code) {
	case OM_MSG_HELLO:
		m.u.hello.name = "probe";
		m.u.hello.idc = "bj";
		m.u.hello.version = OM_PROTO_VERSION;
		break;
	case OM_MSG_WELCOME:
		m.u.welcome.worker_id = 1;
		break;
	case OM_MSG_TASK:
		m.u.task.job_id = m.u.task.task_id = 999999;
		m.u.task.module = "shell";
		break;
	case OM_MSG_AUTH:
		m.u.auth.token = "omt_probe";
		m.u.auth.version = OM_PROTO_VERSION;
		break;
	case OM_MSG_SUBMIT:
		m.u.submit.selector = "probe-matches-nothing-*";
		m.u.submit.module = "shell";
		m.u.submit.params = &kv;
		m.u.submit.nparams = 1;
		break;
	case OM_MSG_SUBMITTED:
		m.u.submitted.job_id = 999999;
		break;
	case OM_MSG_FOLLOW:
		m.u.follow.job_id = 999999;
		break;
	case OM_MSG_EVENTS:
		m.u.events.job_id = 999999;
		break;
	case OM_MSG_HOSTS_LIST:
		m.u.hosts_list.selector = "all";
		break;
	case OM_MSG_HOSTS:
	case OM_MSG_HOSTS_ADD:
		m.u.hosts.hosts = &host;
		m.u.hosts.nhosts = 1;
		break;
	case OM_MSG_ERROR:
		m.u.error.code = OM_EINVAL;
		break;
	case OM_MSG_KEY_SET:
		m.u.key_set.id = 1;
		m.u.key_set.state = OM_KEY_REVOKED;
		break;
	case OM_MSG_ENROLL_CREATE:
		m.u.enroll.idc = "bj";
		m.u.enroll.ttl_s = 60;
		break;
	case OM_MSG_USER_ADD:
	case OM_MSG_USER_PASSWD:
	case OM_MSG_USER_DISABLE:
		m.u.user.name = code == OM_MSG_USER_ADD ? "probe-user" : "admin";
		m.u.user.role = "viewer";
		m.u.user.password = "probe-password-1";
		m.u.user.flag = true;
		break;
	case OM_MSG_TOKEN_CREATE:
		m.u.token.name = "probe";
		m.u.token.scopes = scopes;
		m.u.token.nscopes = 1;
		break;
	case OM_MSG_TOKEN_REVOKE:
		m.u.by_id.id = 999999;
		break;
	case OM_MSG_MODULE_SHOW:
		m.u.by_name.name = "probe-no-such-module";
		break;
	case OM_MSG_SECRET:
		m.u.secret.id = 1;
		m.u.secret.secret = "x";
		break;
	case OM_MSG_TABLE: {
		static char *cols[] = {"X"};
		m.u.table.columns = cols;
		m.u.table.ncolumns = 1;
		break;
	}
	default:
		break;
	}
	om_buf_init(b, 4096);
	if (om_msg_encode(&m, b) != 0 || b->err) {
		om_buf_release(b);
		bare(b, code);
	}
}

static void
sweep_anon(bool ik)
{
	struct om_keypair throwaway;
	unsigned code;

	om_keypair_generate(&throwaway);
	for (code = 0; code < 256; code++) {
		struct om_buf b;
		int rv;

		/* A handshake whose payload is not HELLO/AUTH but some other type. */
		build(&b, code);
		{
			/* Through the real client: its hello is the raw payload. */
			struct om_rpc_client *c;
			struct om_msg ans;
			struct om_rpc_client_opts o;
			memset(&o, 0, sizeof(o));
			o.url = url;
			o.pattern = ik ? OM_NOISE_IK : OM_NOISE_NK;
			o.local = ik ? &throwaway : NULL;
			memcpy(o.master_pub, master_pub, OM_NOISE_KEYLEN);
			o.hello_raw = b.data;
			o.hello_raw_len = b.len;
			o.connect_timeout_ms = 1000;
			if (om_rpc_client_open(&c, &o) != 0) {
				printf("%u local-error\n", code);
			} else {
				rv = om_rpc_connect(c, &ans);
				if (rv == 0)
					printf("%u answered %d\n", code, (int)ans.type);
				else if (rv == OM_EAUTH)
					printf("%u refused\n", code);
				else
					printf("%u dropped\n", code);
				om_msg_release(&ans);
				om_rpc_client_close(c);
			}
		}
		om_buf_release(&b);
		fflush(stdout);
		usleep(HANDSHAKE_PACE_US);
	}
}

static void
sweep(const struct om_msg *hello, const struct om_keypair *kp)
{
	struct om_rpc_client *c = open_client(hello, kp);
	unsigned code;

	for (code = 0; code < 256; code++) {
		struct om_buf b;
		struct om_msg rep;
		int rv;

		build(&b, code);
		rv = om_rpc_call_raw(c, b.data, b.len, &rep, 1500);
		om_buf_release(&b);
		if (rv != 0) {
			printf("%u dropped\n", code);
			usleep(HANDSHAKE_PACE_US);
			/* The session may be gone: start over for the next code. */
			om_rpc_client_close(c);
			c = open_client(hello, kp);
			continue;
		}
		if (rep.type == OM_MSG_ERROR) {
			printf("%u error %d %s\n", code, (int)rep.u.error.code,
			       rep.u.error.text ? rep.u.error.text : "");
			usleep(HANDSHAKE_PACE_US); /* a refusal may end the session */
		}
		else
			printf("%u answered %d\n", code, (int)rep.type);
		om_msg_release(&rep);
		fflush(stdout);
	}
	om_rpc_client_close(c);
}

static void
load_key(const char *path, struct om_keypair *kp)
{
	int rv = om_key_load(path, kp);

	if (rv != 0) {
		fprintf(stderr, "om-probe: cannot load key '%s': %s\n", path, om_strerror(rv));
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	struct om_msg hello = {.type = OM_MSG_HELLO}, auth = {.type = OM_MSG_AUTH};
	struct om_keypair kp;

	if (argc == 5 && strcmp(argv[3], "keygen") == 0) {
		bool created;
		return om_key_load_or_create(argv[4], &kp, &created) == 0 ? 0 : 1;
	}
	if (argc < 4 || om_hex_decode(argv[2], master_pub, OM_NOISE_KEYLEN) != 0) {
		fprintf(stderr, "usage: om-probe URL MASTER_KEY COMMAND ... (see the source)\n");
		return 2;
	}
	url = argv[1];
	hello.u.hello.version = OM_PROTO_VERSION;
	hello.u.hello.capacity = 1;
	if (strcmp(argv[3], "sweep-anon") == 0) {
		/* NK on the client endpoint; IK with an unknown key on the worker endpoint. */
		sweep_anon(argc > 4 && strcmp(argv[4], "ik") == 0);
		return 0;
	}
	if (strcmp(argv[3], "sweep-client") == 0 && argc == 5) {
		auth.u.auth.token = argv[4];
		auth.u.auth.version = OM_PROTO_VERSION;
		sweep(&auth, NULL);
		return 0;
	}
	if (argc < 7) {
		fprintf(stderr, "om-probe: missing arguments\n");
		return 2;
	}
	load_key(argv[4], &kp);
	hello.u.hello.name = argv[5];
	hello.u.hello.idc = argv[6];
	if (strcmp(argv[3], "sweep-worker") == 0) {
		sweep(&hello, &kp);
		return 0;
	}
	if (strcmp(argv[3], "hello") == 0) {
		struct om_rpc_client *c;
		struct om_msg ans;
		int rv;
		if (argc > 7)
			hello.u.hello.secret = argv[7];
		c = open_client(&hello, &kp);
		rv = om_rpc_connect(c, &ans);
		if (rv == 0)
			printf("welcome\n");
		else if (rv == OM_EAUTH)
			printf("refused: %s\n", ans.u.error.text ? ans.u.error.text : "");
		else
			printf("no answer: %s\n", om_strerror(rv));
		om_msg_release(&ans);
		om_rpc_client_close(c);
		return 0;
	}
	if (strcmp(argv[3], "report") == 0 && argc == 8) {
		struct om_msg req = {.type = OM_MSG_REPORT}, rep;
		struct om_result res;
		struct om_rpc_client *c = open_client(&hello, &kp);
		int rv;
		memset(&res, 0, sizeof(res));
		res.task_id = strtoull(argv[7], NULL, 10);
		res.host = 0;
		res.state = OM_HS_OK;
		res.exit_code = 0;
		req.u.report.results = &res;
		req.u.report.nresults = 1;
		rv = om_rpc_call(c, &req, &rep, 3000);
		if (rv != 0)
			printf("no answer: %s\n", om_strerror(rv));
		else if (rep.type == OM_MSG_ACK)
			printf("ack\n");
		else
			printf("error: %s\n", rep.type == OM_MSG_ERROR && rep.u.error.text
			                            ? rep.u.error.text
			                            : "?");
		om_msg_release(&rep);
		om_rpc_client_close(c);
		return 0;
	}
	fprintf(stderr, "om-probe: unknown command '%s'\n", argv[3]);
	return 2;
}
