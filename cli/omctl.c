/*
 * omctl: the master's command-line client (what CI calls).
 *
 * Exit codes: 0 every host ok; 1 some host not ok; 2 usage, connection or
 * authentication error (one line on stderr); 3 the master was lost: no
 * master answered within --reconnect-timeout while following a job, or a
 * submit got no answer (the job may exist: omctl never submits it twice).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "args.h"
#include "om/base.h"
#include "om/chan.h"
#include "om/inventory.h"
#include "om/msg.h"
#include "om/params.h"
#include "om/rpc.h"

#define EXIT_NOT_OK     1
#define EXIT_USAGE      2
#define EXIT_LOST       3 /* the master was lost: the job's outcome is unknown */
#define CALL_TIMEOUT_MS 30000
#define FOLLOW_WAIT_MS  5000
#define RECONNECT_S     120   /* --reconnect-timeout default: seconds from a loss */
#define RECONNECT_PAUSE 500   /* ms between reconnection attempts */
#define LINE_MAX_BYTES  65536 /* a longer line is printed in pieces */
#define IMPORT_BATCH    1000

struct ctl {
	const char *master, *master_key, *token;
	const char *user, *password; /* password login instead of a token */
	bool json;
	uint32_t reconnect_s; /* --reconnect-timeout */
	struct om_rpc_client *rpc;
};

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
die(const char *fmt, ...)
{
	va_list ap;

	fputs("omctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: omctl [--master URL,...] [--master-key HEX] [--token T | --user U\n"
	           "             [--password-file F]] [--json] [--reconnect-timeout S] COMMAND\n"
	           "\n"
	           "  run -t SELECTOR -m MODULE [-a ARGS] [-e KEY=VALUE]... [--timeout S]\n"
	           "        [--forks N] [--wait S] [--reconnect-timeout S]\n"
	           "        [--batch N|N%%] [--max-fail PCT] [--become] [--become-user U] [--check]\n"
	           "        [--retry-lost]               (hosts of a dead worker run again elsewhere)\n"
	           "  hosts add NAME --addr A --idc I [--port P] [--user U] [--group G]...\n"
	           "  hosts list [-t SELECTOR]\n"
	           "  hosts show NAME                     (inventory fields and facts)\n"
	           "  job cancel ID | job fetch ID --dest DIR\n"
	           "  job show ID [--state S]            (the job, its host counts, its hosts)\n"
	           "  job output ID [--host H]           (stored output; one host: raw bytes)\n"
	           "  job follow ID                      (output from the start, live, then the\n"
	           "                                     summary; exit codes as run)\n"
	           "  jobs list [--state running|done] [--user NAME] [--since DURATION]\n"
	           "        [--limit N]                  (newest first; 50, at most 1000)\n"
	           "  hosts import FILE [--idc DEFAULT]   (Ansible INI inventory)\n"
	           "  workers list\n"
	           "  modules list | module show NAME   (a module's parameters)\n"
	           "  keys list | accept ID [--fingerprint F] | reject ID | revoke ID\n"
	           "  keys enroll-token --idc NAME --ttl DURATION\n"
	           "  users list | add NAME --role admin|operator|viewer [--idc I]... [--group G]...\n"
	           "        [--module M]... [--password-file F] | passwd NAME [--password-file F]\n"
	           "        | disable NAME | enable NAME\n"
	           "  tokens list | create --name N [--scope read,run,admin] [--ttl 30d] [--user U]\n"
	           "        | revoke ID\n"
	           "  audit list [--since DURATION] [--limit N] | audit verify\n"
	           "\n"
	           "Selectors: all, idc:NAME, group:NAME, a host name or glob (web-*),\n"
	           "           A,B for union, !A to exclude.\n"
	           "Arguments: -a 'k=v k2=\"v 2\"' when every word is a parameter of the module,\n"
	           "           else -a TEXT is the module's free-form parameter (shell: the\n"
	           "           command); -e/--param KEY=VALUE sets one.  A file parameter takes\n"
	           "           a local path: omctl sends the file's content.\n"
	           "Durations: 45s, 10m, 12h, 30d.  Passwords: --password-file FILE, OM_PASSWORD,\n"
	           "           or one line of standard input.\n"
	           "Masters:   --master or OM_MASTER may list several masters (one database),\n"
	           "           comma-separated: omctl uses the first that answers.  While run\n"
	           "           follows a job and loses its master, it reconnects and goes on\n"
	           "           for --reconnect-timeout seconds (default 120).\n"
	           "Exit codes: 0 every host ok, 1 some host not ok, 2 usage, connection or\n"
	           "           authentication error, 3 master lost: none answered within\n"
	           "           --reconnect-timeout while following, or a submit got no answer\n"
	           "           (the job may exist; omctl never submits it twice).\n"
	           "Environment: OM_MASTER, OM_MASTER_KEY, OM_TOKEN, OM_USER, OM_PASSWORD.\n");
}

static int
connect_master(struct ctl *c)
{
	struct om_rpc_client_opts o;
	struct om_msg auth = {.type = OM_MSG_AUTH}, ans;
	int rv;

	if (c->master == NULL || c->master_key == NULL ||
	    (c->token == NULL && (c->user == NULL || c->password == NULL)))
		return die("need --master, --master-key and --token or --user with a password "
		           "(or OM_MASTER, OM_MASTER_KEY, OM_TOKEN or OM_USER and OM_PASSWORD)");
	memset(&o, 0, sizeof(o));
	if (om_hex_decode(c->master_key, o.master_pub, OM_NOISE_KEYLEN) != 0)
		return die("the master key must be 64 hex digits");
	if (c->token != NULL) {
		auth.u.auth.token = (char *)c->token;
	} else {
		auth.u.auth.user = (char *)c->user;
		auth.u.auth.password = (char *)c->password;
	}
	auth.u.auth.version = OM_PROTO_VERSION;
	o.url = c->master;
	o.pattern = OM_NOISE_NK;
	o.hello = &auth;
	o.connect_timeout_ms = 5000;
	if ((rv = om_rpc_client_open(&c->rpc, &o)) != 0)
		return die("cannot use master address '%s': %s", c->master, om_strerror(rv));
	rv = om_rpc_connect(c->rpc, &ans);
	if (rv == OM_EAUTH) {
		die("master refused the connection: %s",
		    ans.u.error.text ? ans.u.error.text : "authentication failed");
		om_msg_release(&ans);
		return EXIT_USAGE;
	}
	om_msg_release(&ans);
	if (rv == OM_ECRYPTO)
		return die("cannot reach master at %s: handshake failed (wrong master key?)",
		           c->master);
	if (rv != 0)
		return die("cannot reach master at %s: %s", c->master, om_strerror(rv));
	return 0;
}

/* A call's outcome rv: 0 with *rep of the expected type, or prints why and returns 2. */
static int
call_check(int rv, struct om_msg *rep, enum om_msg_type want)
{
	if (rv == OM_EAUTH)
		return die("master refused the connection: authentication failed");
	if (rv != 0)
		return die("request to master failed: %s", om_strerror(rv));
	if (rep->type == OM_MSG_ERROR) {
		die("%s", rep->u.error.text ? rep->u.error.text : om_strerror(rep->u.error.code));
		om_msg_release(rep);
		return EXIT_USAGE;
	}
	if (rep->type != want) {
		om_msg_release(rep);
		return die("unexpected answer from master");
	}
	return 0;
}

/* Sends req; returns 0 with *rep of the expected type, or prints why and returns 2. */
static int
call(struct ctl *c, const struct om_msg *req, struct om_msg *rep, enum om_msg_type want)
{
	return call_check(om_rpc_call(c->rpc, req, rep, CALL_TIMEOUT_MS), rep, want);
}

/* A failed call that another try, maybe on another master, may fix. */
static bool
call_lost(int rv)
{
	return rv == OM_ETIMEDOUT || rv == OM_ECLOSED || rv == OM_ETRANSPORT ||
	       rv == OM_ESESSION || rv == OM_EPROTO || rv == OM_ECRYPTO || rv == OM_EAUTH;
}

/* -------------------------------------------------------------- modules */

static void json_print(json_t *o);

/* s with control bytes replaced: module texts come from workers, not from us. */
static const char *
printable(const char *s, char *buf, size_t cap)
{
	size_t i;

	if (s == NULL)
		return "-";
	for (i = 0; s[i] && i + 1 < cap; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/*
 * The module's description and schema from the master (MODULE_SHOW): *rep
 * (caller releases) holds the one module, *schema its parsed parameters
 * (caller frees with om_params_schema_free).  Prints why and returns 2.
 */
static int
fetch_module(struct ctl *c, const char *module, struct om_msg *rep, struct om_plugin_param **schema,
             size_t *ns)
{
	struct om_msg req = {.type = OM_MSG_MODULE_SHOW};
	char err[256];
	int rv;

	req.u.by_name.name = (char *)module;
	if ((rv = call(c, &req, rep, OM_MSG_MODULES)) != 0)
		return rv;
	if (rep->u.modules.nmodules != 1 || strcmp(rep->u.modules.modules[0].name, module) != 0) {
		om_msg_release(rep);
		return die("unexpected answer from master");
	}
	if (om_params_schema_parse(rep->u.modules.modules[0].schema, schema, ns, err,
	                           sizeof(err)) != 0) {
		om_msg_release(rep);
		return die("module '%s': unreadable schema from the master: %s", module, err);
	}
	return 0;
}

/* The SUBMIT params of run: -e pairs, then -a text, then file contents (see args.h). */
static int
module_args(struct ctl *c, const char *module, const char *text, const char *const *ep, size_t nep,
            struct om_args *out)
{
	struct om_plugin_param *schema = NULL;
	struct om_msg rep;
	size_t ns = 0, i, total = 0;
	char err[512];
	int rv;

	if ((rv = fetch_module(c, module, &rep, &schema, &ns)) != 0)
		return rv;
	om_msg_release(&rep);
	for (i = 0; i < nep && rv == 0; i++)
		rv = om_args_param(out, schema, ns, ep[i], err, sizeof(err));
	if (rv == 0 && text != NULL)
		rv = om_args_text(out, schema, ns, text, err, sizeof(err));
	if (rv == 0)
		rv = om_args_load_files(out, schema, ns, err, sizeof(err));
	for (i = 0; rv == 0 && i < out->n; i++)
		total += strlen(out->kv[i].key) + strlen(out->kv[i].val) + 16;
	/* several files can each fit a parameter and still not fit one request */
	if (rv == 0 && total > OM_MAX_FRAME - 65536) {
		snprintf(err, sizeof(err),
		         "parameters add up to %zu bytes, more than one request carries", total);
		rv = OM_EMSGSIZE;
	}
	om_params_schema_free(schema, ns);
	if (rv == 0)
		return 0;
	om_args_release(out);
	if (rv == OM_ENOMEM)
		return die("out of memory");
	return die("module '%s': %s", module, err);
}

static int
modules_list(struct ctl *c)
{
	struct om_msg req = {.type = OM_MSG_MODULES_LIST}, rep;
	char b1[OM_MAX_TEXT + 1], b2[80], b3[80];
	uint32_t i;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, &req, &rep, OM_MSG_MODULES)) != 0)
		return rv;
	if (!c->json)
		printf("%-20s %-10s %-7s %-10s %s\n", "NAME", "VERSION", "KIND", "IDEMPOTENT",
		       "DESCRIPTION");
	for (i = 0; i < rep.u.modules.nmodules; i++) {
		const struct om_module_info *mi = &rep.u.modules.modules[i];
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "name", json_string(mi->name));
			json_object_set_new(o, "version", json_string(mi->version));
			json_object_set_new(o, "kind", json_string(mi->kind));
			json_object_set_new(o, "idempotent", json_boolean(mi->idempotent));
			json_object_set_new(o, "description",
			                    json_string(mi->description ? mi->description : ""));
			json_print(o);
			continue;
		}
		printf("%-20s %-10s %-7s %-10s %s\n", mi->name,
		       printable(mi->version, b2, sizeof(b2)), printable(mi->kind, b3, sizeof(b3)),
		       mi->idempotent ? "yes" : "no", printable(mi->description, b1, sizeof(b1)));
	}
	om_msg_release(&rep);
	return 0;
}

static int
module_show(struct ctl *c, const char *name)
{
	struct om_plugin_param *schema = NULL;
	char b1[OM_MAX_TEXT + 1], b2[80], b3[80], dflt[64], choices[256];
	const struct om_module_info *mi;
	struct om_msg rep;
	size_t ns = 0, i, o;
	int rv;

	if (!om_name_valid(name))
		return die("invalid module name '%s'", name);
	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = fetch_module(c, name, &rep, &schema, &ns)) != 0)
		return rv;
	mi = &rep.u.modules.modules[0];
	if (c->json) {
		json_t *s = json_loads(mi->schema, 0, NULL);
		if (s != NULL)
			json_print(s);
		else
			rv = die("module '%s': unreadable schema from the master", name);
		goto out;
	}
	printf("module %s %s (%s): %s\n", mi->name, printable(mi->version, b2, sizeof(b2)),
	       printable(mi->kind, b3, sizeof(b3)), printable(mi->description, b1, sizeof(b1)));
	printf("idempotent: %s\n\n",
	       mi->idempotent ? "yes (lost hosts run again on another worker)" : "no");
	printf("%-16s %-7s %-8s %-16s %-20s %s\n", "NAME", "TYPE", "REQUIRED", "DEFAULT", "CHOICES",
	       "DESCRIPTION");
	for (i = 0; i < ns; i++) {
		const struct om_plugin_param *p = &schema[i];
		if (p->default_value == NULL)
			snprintf(dflt, sizeof(dflt), "-");
		else if (p->flags & OM_PARAM_SECRET)
			snprintf(dflt, sizeof(dflt), "(secret)");
		else
			printable(p->default_value, dflt, sizeof(dflt));
		o = 0;
		choices[0] = '\0';
		for (size_t k = 0; p->choices && p->choices[k] && o + 1 < sizeof(choices); k++)
			o += (size_t)snprintf(choices + o, sizeof(choices) - o, "%s%s",
			                      k ? "," : "", p->choices[k]);
		printf("%-16s %-7s %-8s %-16s %-20s %s%s\n", p->name, p->type,
		       p->required ? "yes" : "no", dflt,
		       o ? printable(choices, b3, sizeof(b3)) : "-",
		       (p->flags & OM_PARAM_FREE_FORM) ? "(free-form: -a TEXT) " : "",
		       printable(p->description && *p->description ? p->description : "-", b1,
		                 sizeof(b1)));
	}
out:
	om_params_schema_free(schema, ns);
	om_msg_release(&rep);
	return rv;
}

/* modules list | modules show NAME | module show NAME */
static int
cmd_modules(struct ctl *c, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return modules_list(c);
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return module_show(c, argv[1]);
	return die("usage: omctl modules list | omctl module show NAME");
}

/* ------------------------------------------------------------------ run */

struct hoststate {
	char *name;
	struct om_buf line[2]; /* partial stdout, stderr line */
	bool final;
	uint32_t state;
	int32_t exit_code;
	char *reason;
	uint64_t duration_ms;
	bool changed;
	char *result; /* the module's structured result (JSON text) or NULL */
};

struct hosttab {
	struct hoststate **slots;
	size_t cap, n;
};

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static struct hoststate *
hosttab_get(struct hosttab *t, const char *name)
{
	size_t i;

	if (t->n * 2 >= t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64, k;
		struct hoststate **ns = om_calloc(ncap, sizeof(*ns));
		if (ns == NULL)
			return NULL;
		for (k = 0; k < t->cap; k++) {
			if (t->slots[k] == NULL)
				continue;
			for (i = fnv1a(t->slots[k]->name) % ncap; ns[i]; i = (i + 1) % ncap)
				;
			ns[i] = t->slots[k];
		}
		om_free(t->slots);
		t->slots = ns;
		t->cap = ncap;
	}
	for (i = fnv1a(name) % t->cap; t->slots[i]; i = (i + 1) % t->cap)
		if (strcmp(t->slots[i]->name, name) == 0)
			return t->slots[i];
	if ((t->slots[i] = om_calloc(1, sizeof(struct hoststate))) == NULL)
		return NULL;
	t->slots[i]->name = om_strdup(name);
	om_buf_init(&t->slots[i]->line[0], LINE_MAX_BYTES);
	om_buf_init(&t->slots[i]->line[1], LINE_MAX_BYTES);
	t->n++;
	return t->slots[i];
}

static void
hosttab_free(struct hosttab *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++) {
		struct hoststate *h = t->slots[i];
		if (h == NULL)
			continue;
		om_buf_release(&h->line[0]);
		om_buf_release(&h->line[1]);
		om_free(h->name);
		om_free(h->reason);
		om_free(h->result);
		om_free(h);
	}
	om_free(t->slots);
}

static void
json_print(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_ESCAPE_SLASH);

	if (s != NULL) {
		puts(s);
		free(s);
	}
	json_decref(o);
}

/* Bytes as a JSON string when they are UTF-8, else as hex under another key. */
static void
json_set_bytes(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	json_t *s = json_stringn((const char *)p, n);
	char hkey[64];

	if (s != NULL) {
		json_object_set_new(o, key, s);
		return;
	}
	char *hex = om_malloc(2 * n + 1);
	if (hex == NULL)
		return;
	om_hex_encode(p, n, hex);
	snprintf(hkey, sizeof(hkey), "%s_hex", key);
	json_object_set_new(o, hkey, json_string(hex));
	om_free(hex);
}

static void
print_line(struct ctl *c, const char *host, int stream, const uint8_t *p, size_t n)
{
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "event", json_string("output"));
		json_object_set_new(o, "host", json_string(host));
		json_object_set_new(o, "stream", json_string(stream == 2 ? "stderr" : "stdout"));
		json_set_bytes(o, "line", p, n);
		json_print(o);
		return;
	}
	/* Raw bytes: the terminal gets what the host printed, NULs aside. */
	printf("%s %c ", host, stream == 2 ? '!' : '|');
	fwrite(p, 1, n, stdout);
	putchar('\n');
}

static void
feed_output(struct ctl *c, struct hoststate *h, int stream, const uint8_t *p, size_t n)
{
	struct om_buf *b = &h->line[stream == 2 ? 1 : 0];

	while (n > 0) {
		const uint8_t *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		size_t room = LINE_MAX_BYTES - b->len;

		if (take > room)
			take = room;
		om_buf_append(b, p, take);
		p += take;
		n -= take;
		if (b->len == LINE_MAX_BYTES || (n > 0 && *p == '\n')) {
			print_line(c, h->name, stream, b->data, b->len);
			om_buf_reset(b);
			if (n > 0 && *p == '\n')
				p++, n--;
		}
	}
}

static void
flush_partial(struct ctl *c, struct hoststate *h)
{
	int s;

	for (s = 0; s < 2; s++) {
		if (h->line[s].len > 0) {
			print_line(c, h->name, s + 1, h->line[s].data, h->line[s].len);
			om_buf_reset(&h->line[s]);
		}
	}
}

static int
cmp_host(const void *a, const void *b)
{
	const struct hoststate *x = *(struct hoststate *const *)a;
	const struct hoststate *y = *(struct hoststate *const *)b;

	return strcmp(x->name, y->name);
}

static int
print_summary(struct ctl *c, uint64_t job, struct hosttab *t)
{
	struct hoststate **list;
	unsigned counts[OM_HS_COUNT_] = {0};
	size_t i, n = 0;
	int s;

	if ((list = om_calloc(t->n + 1, sizeof(*list))) == NULL)
		return die("out of memory");
	for (i = 0; i < t->cap; i++)
		if (t->slots[i] != NULL)
			list[n++] = t->slots[i];
	qsort(list, n, sizeof(*list), cmp_host);
	for (i = 0; i < n; i++) {
		struct hoststate *h = list[i];
		flush_partial(c, h);
		if (!h->final)
			continue;
		counts[h->state < OM_HS_COUNT_ ? h->state : 0]++;
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "event", json_string("host"));
			json_object_set_new(o, "host", json_string(h->name));
			json_object_set_new(o, "state",
			                    json_string(om_host_state_name((int)h->state)));
			json_object_set_new(o, "exit",
			                    h->exit_code >= 0 ? json_integer(h->exit_code)
			                                      : json_null());
			json_object_set_new(o, "duration_ms",
			                    json_integer((json_int_t)h->duration_ms));
			json_object_set_new(o, "reason",
			                    h->reason ? json_string(h->reason) : json_null());
			json_object_set_new(o, "changed", json_boolean(h->changed));
			if (h->result != NULL) {
				/* As JSON when it is JSON (the master checks), else as text. */
				json_t *res = json_loads(h->result, 0, NULL);
				json_object_set_new(o, "result",
				                    res ? res : json_string(h->result));
			}
			json_print(o);
			continue;
		}
		/* "changed" last inside the parentheses: scripts match "host: state (exit N". */
		printf("%s: %s (", h->name, om_host_state_name((int)h->state));
		if (h->exit_code >= 0)
			printf("exit %d, ", h->exit_code);
		printf("%.2f s%s)", (double)h->duration_ms / 1000.0, h->changed ? ", changed" : "");
		if (h->reason != NULL)
			printf(": %s", h->reason);
		putchar('\n');
	}
	om_free(list);
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "event", json_string("summary"));
		json_object_set_new(o, "job", json_integer((json_int_t)job));
		for (s = OM_HS_OK; s < OM_HS_COUNT_; s++)
			json_object_set_new(o, om_host_state_name(s), json_integer(counts[s]));
		json_print(o);
	} else {
		printf("summary: %u ok, %u failed, %u unreachable, %u timeout", counts[OM_HS_OK],
		       counts[OM_HS_FAILED], counts[OM_HS_UNREACHABLE], counts[OM_HS_TIMEOUT]);
		for (s = OM_HS_CANCELLED; s < OM_HS_COUNT_; s++)
			if (counts[s] > 0)
				printf(", %u %s", counts[s], om_host_state_name(s));
		putchar('\n');
	}
	for (s = 0; s < OM_HS_COUNT_; s++)
		if (s != OM_HS_OK && counts[s] > 0)
			return EXIT_NOT_OK;
	return n == counts[OM_HS_OK] ? 0 : EXIT_NOT_OK;
}

/* "N" or "N%": *pct says which. */
static int
parse_count_pct(const char *s, uint32_t *n, bool *pct)
{
	char num[16];
	size_t len = strlen(s);

	*pct = len > 0 && s[len - 1] == '%';
	if (*pct)
		len--;
	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len);
	num[len] = '\0';
	return om_parse_u32(num, 0, UINT32_MAX, n);
}

/* ------------------------------------------------------------ following */

enum follow_flags {
	FOLLOW_FILES = 1 << 0, /* with stream 3 events: fetched file bytes */
};

#define FOLLOW_EXPIRED (-1) /* follow_events: its deadline passed */

/*
 * Hands every event of job after *cursor to fn, in order, until the job is
 * done; a nonzero return of fn stops it and is returned.  *cursor is always
 * the last event handed over; stdout is flushed after every answer.
 *
 * A FOLLOW that fails in transport, times out, or is answered with an ERROR
 * OM_EDB loses the master: one line on stderr, then omctl reconnects (to
 * the next master of --master, the RPC client moving on by itself when one
 * does not answer) and asks again after *cursor, so no event is handed over
 * twice or skipped.  Returns 0 when the job is done; FOLLOW_EXPIRED once
 * deadline_ms (om_now_ms(); 0: none) passed; EXIT_LOST when no master
 * answered within --reconnect-timeout of the loss; EXIT_USAGE after printing
 * any other refusal or error; or what fn returned.
 */
static int
follow_events(struct ctl *c, uint64_t job, uint64_t *cursor, unsigned flags, int64_t deadline_ms,
              int (*fn)(struct ctl *, const struct om_event *, void *), void *arg)
{
	int64_t lost_ms = 0; /* when the master was lost; 0: it was not */
	char why[256] = "";

	for (;;) {
		struct om_msg f = {.type = OM_MSG_FOLLOW}, ev;
		int64_t left = 0;
		int timeout = FOLLOW_WAIT_MS + CALL_TIMEOUT_MS;
		bool done;
		uint32_t i;
		int rv;

		if (deadline_ms != 0 && om_now_ms() > deadline_ms)
			return FOLLOW_EXPIRED;
		if (lost_ms != 0) {
			struct om_msg ans;

			left = lost_ms + (int64_t)c->reconnect_s * 1000 - om_now_ms();
			if (left <= 0) {
				die("no master answered within %u s (--reconnect-timeout) while "
				    "following job %llu (%s); the job may still be running",
				    c->reconnect_s, (unsigned long long)job, why);
				return EXIT_LOST;
			}
			usleep((useconds_t)(left < RECONNECT_PAUSE ? left : RECONNECT_PAUSE) * 1000);
			/* Try another master first: this one failed us. */
			om_rpc_client_failover(c->rpc);
			rv = om_rpc_connect(c->rpc, &ans);
			if (rv == OM_EAUTH && ans.u.error.code != OM_EDB) {
				die("master refused the connection: %s",
				    ans.u.error.text ? ans.u.error.text : "authentication failed");
				om_msg_release(&ans);
				return EXIT_USAGE;
			}
			if (rv != 0)
				snprintf(why, sizeof(why), "%s",
				         rv == OM_EAUTH && ans.u.error.text ? ans.u.error.text
				                                            : om_strerror(rv));
			om_msg_release(&ans);
			if (rv != 0)
				continue;
			/* Prove the master serves, without a long-poll, within the bound. */
			left = lost_ms + (int64_t)c->reconnect_s * 1000 - om_now_ms();
			timeout = left < CALL_TIMEOUT_MS ? (left < 1000 ? 1000 : (int)left)
			                                 : CALL_TIMEOUT_MS;
		}
		f.u.follow.job_id = job;
		f.u.follow.cursor = *cursor;
		f.u.follow.wait_ms = lost_ms != 0 ? 0 : FOLLOW_WAIT_MS;
		f.u.follow.files = (flags & FOLLOW_FILES) != 0;
		rv = om_rpc_call(c->rpc, &f, &ev, timeout);
		if (rv != 0 && !call_lost(rv))
			return die("request to master failed: %s", om_strerror(rv));
		if (rv == 0 && ev.type == OM_MSG_ERROR && ev.u.error.code != OM_EDB) {
			die("%s", ev.u.error.text ? ev.u.error.text : om_strerror(ev.u.error.code));
			om_msg_release(&ev);
			return EXIT_USAGE;
		}
		if (rv == 0 && ev.type != OM_MSG_EVENTS && ev.type != OM_MSG_ERROR) {
			om_msg_release(&ev);
			return die("unexpected answer from master");
		}
		if (rv != 0 || ev.type == OM_MSG_ERROR) {
			if (rv == 0) {
				snprintf(why, sizeof(why), "%s",
				         ev.u.error.text ? ev.u.error.text : om_strerror(OM_EDB));
				om_msg_release(&ev);
			} else {
				snprintf(why, sizeof(why), "%s", om_strerror(rv));
			}
			if (lost_ms == 0) {
				lost_ms = om_now_ms();
				fprintf(stderr, "omctl: connection to master lost (%s); reconnecting\n",
				        why);
			}
			continue;
		}
		lost_ms = 0;
		for (i = 0, rv = 0; i < ev.u.events.nevents && rv == 0; i++) {
			rv = fn(c, &ev.u.events.events[i], arg);
			*cursor = ev.u.events.events[i].id;
		}
		if (rv == 0)
			*cursor = ev.u.events.cursor;
		done = ev.u.events.done;
		om_msg_release(&ev);
		fflush(stdout);
		if (rv != 0 || done)
			return rv;
	}
}

/* cmd_run's follow_events callback: output as it comes, final states into the hosttab. */
static int
run_event(struct ctl *c, const struct om_event *e, void *arg)
{
	struct hoststate *h = e->host ? hosttab_get(arg, e->host) : NULL;

	if (e->kind == OM_EV_OUTPUT && h != NULL) {
		/* Fetched file bytes are for `job fetch`, never the terminal. */
		if (e->stream == OM_STREAM_STDOUT || e->stream == OM_STREAM_STDERR)
			feed_output(c, h, (int)e->stream, e->data, e->len);
	} else if (e->kind == OM_EV_STATE && h != NULL && om_host_state_final((int)e->state)) {
		h->final = true;
		h->state = e->state;
		h->exit_code = e->exit_code;
		h->duration_ms = e->duration_ms;
		h->changed = e->changed;
		om_free(h->reason);
		h->reason = e->reason ? om_strdup(e->reason) : NULL;
		om_free(h->result);
		h->result = e->result ? om_strdup(e->result) : NULL;
		flush_partial(c, h);
	}
	return 0;
}

static int
cmd_run(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"target", required_argument, NULL, 't'}, {"module", required_argument, NULL, 'm'},
	        {"args", required_argument, NULL, 'a'},   {"timeout", required_argument, NULL, 'T'},
	        {"forks", required_argument, NULL, 'f'},
	        {"wait", required_argument, NULL, 'w'},
	        {"param", required_argument, NULL, 'e'},
	        {"batch", required_argument, NULL, 'B'},
	        {"max-fail", required_argument, NULL, 'X'},
	        {"become", no_argument, NULL, 'b'},
	        {"become-user", required_argument, NULL, 'u'},
	        {"check", no_argument, NULL, 'C'},
	        {"retry-lost", no_argument, NULL, 'L'},
	        {"reconnect-timeout", required_argument, NULL, 'R'},
	        {NULL, 0, NULL, 0},
	};
	struct om_msg req = {.type = OM_MSG_SUBMIT}, rep;
	uint32_t wait_s = 0;
	int64_t deadline;
	const char *eparams[OM_MAX_PARAMS];
	size_t neparams = 0;
	struct om_args margs = {0};
	struct hosttab tab = {0};
	const char *sel = NULL, *module = "shell", *args = NULL;
	uint32_t timeout = 0, forks = 0, batch = 0, max_fail = 0;
	bool batch_pct = false, has_max_fail = false, become = false, check = false;
	const char *become_user = NULL;
	uint64_t job, cursor = 0;
	int ch, rv;

	optind = 0; /* 0: glibc fully re-initialises getopt (main parsed with "+") */
	while ((ch = getopt_long(argc, argv, "t:m:a:e:", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			sel = optarg;
			break;
		case 'm':
			module = optarg;
			break;
		case 'a':
			args = optarg;
			break;
		case 'e':
			if (neparams == OM_MAX_PARAMS)
				return die("more than %d parameters", OM_MAX_PARAMS);
			eparams[neparams++] = optarg;
			break;
		case 'T':
			if (om_parse_u32(optarg, 0, 86400 * 7, &timeout) != 0)
				return die("--timeout wants seconds (0..604800)");
			break;
		case 'f':
			if (om_parse_u32(optarg, 0, 100000, &forks) != 0 || forks == 0)
				return die("--forks wants 1..100000");
			break;
		case 'w':
			if (om_parse_u32(optarg, 0, 86400 * 7, &wait_s) != 0 || wait_s == 0)
				return die("--wait wants seconds (1..604800)");
			break;
		case 'B':
			/* N hosts per wave, or N% of the job's hosts */
			if (parse_count_pct(optarg, &batch, &batch_pct) != 0 || batch == 0 ||
			    batch > (batch_pct ? 100u : (uint32_t)OM_MAX_HOSTS))
				return die("--batch wants 1..%d hosts or 1..100%%", OM_MAX_HOSTS);
			break;
		case 'X': {
			bool pct;
			if (parse_count_pct(optarg, &max_fail, &pct) != 0 || max_fail > 100)
				return die("--max-fail wants a percentage (0..100)");
			has_max_fail = true;
			break;
		}
		case 'b':
			become = true;
			break;
		case 'u':
			if (!om_name_valid(optarg))
				return die("invalid --become-user '%s'", optarg);
			become = true;
			become_user = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'L':
			req.u.submit.retry_lost = true;
			break;
		case 'R':
			if (om_parse_u32(optarg, 0, 86400, &c->reconnect_s) != 0)
				return die("--reconnect-timeout wants seconds (0..86400)");
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (sel == NULL || optind != argc)
		return die("usage: omctl run -t SELECTOR -m MODULE [-a ARGS] [-e KEY=VALUE]... "
		           "[--timeout S]");
	if (!om_name_valid(module))
		return die("invalid module name '%s'", module);
	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = module_args(c, module, args, eparams, neparams, &margs)) != 0)
		return rv;
	req.u.submit.selector = (char *)sel;
	req.u.submit.module = (char *)module;
	req.u.submit.params = margs.kv;
	req.u.submit.nparams = (uint32_t)margs.n;
	req.u.submit.timeout_s = timeout;
	req.u.submit.forks = forks;
	req.u.submit.batch = batch;
	req.u.submit.batch_pct = batch_pct;
	req.u.submit.max_fail = max_fail;
	req.u.submit.has_max_fail = has_max_fail;
	req.u.submit.become = become;
	req.u.submit.become_user = (char *)become_user;
	req.u.submit.check = check;
	rv = om_rpc_call(c->rpc, &req, &rep, CALL_TIMEOUT_MS);
	om_args_release(&margs);
	if (call_lost(rv) && rv != OM_EAUTH && rv != OM_ESESSION) {
		/* Sent, answer lost: the master may have created the job.  Never twice. */
		die("no answer from the master to the submit (%s); the job may have been "
		    "created: not submitting it again",
		    om_strerror(rv));
		return EXIT_LOST;
	}
	if ((rv = call_check(rv, &rep, OM_MSG_SUBMITTED)) != 0)
		return rv;
	job = rep.u.submitted.job_id;
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "event", json_string("job"));
		json_object_set_new(o, "job", json_integer((json_int_t)job));
		json_object_set_new(o, "hosts", json_integer(rep.u.submitted.nhosts));
		json_print(o);
	} else {
		printf("job %llu: %u hosts\n", (unsigned long long)job, rep.u.submitted.nhosts);
	}
	fflush(stdout);
	om_msg_release(&rep);

	/* Every wait has a bound: by default the per-host timeout and a margin, or an hour. */
	if (wait_s == 0)
		wait_s = timeout ? timeout + 120 : 3600;
	deadline = om_now_ms() + (int64_t)wait_s * 1000;
	rv = follow_events(c, job, &cursor, 0, deadline, run_event, &tab);
	if (rv == FOLLOW_EXPIRED) {
		fprintf(stderr, "omctl: job %llu not finished after %u s (--wait); "
		                "hosts without a result are not counted\n",
		        (unsigned long long)job, wait_s);
		print_summary(c, job, &tab);
		hosttab_free(&tab);
		return EXIT_NOT_OK;
	}
	if (rv == 0)
		rv = print_summary(c, job, &tab);
	hosttab_free(&tab);
	return rv;
}

/* ---------------------------------------------------------------- hosts */

static int
send_hosts(struct ctl *c, struct om_host *hosts, size_t n)
{
	size_t off = 0, total = 0;
	int rv;

	while (off < n) {
		struct om_msg req = {.type = OM_MSG_HOSTS_ADD}, rep;
		size_t take = n - off > IMPORT_BATCH ? IMPORT_BATCH : n - off;
		req.u.hosts.hosts = hosts + off;
		req.u.hosts.nhosts = (uint32_t)take;
		if ((rv = call(c, &req, &rep, OM_MSG_DONE)) != 0)
			return rv;
		total += rep.u.done.count;
		om_msg_release(&rep);
		off += take;
	}
	printf("%zu hosts added or updated\n", total);
	return 0;
}

static int
cmd_hosts_add(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"addr", required_argument, NULL, 'A'},  {"port", required_argument, NULL, 'P'},
	        {"user", required_argument, NULL, 'U'},  {"idc", required_argument, NULL, 'I'},
	        {"group", required_argument, NULL, 'G'}, {NULL, 0, NULL, 0},
	};
	char *groups[OM_MAX_GROUPS];
	struct om_host h;
	int ch, rv;

	memset(&h, 0, sizeof(h));
	h.groups = groups;
	optind = 0; /* 0: glibc fully re-initialises getopt (main parsed with "+") */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'A':
			h.addr = optarg;
			break;
		case 'P':
			if (om_parse_u32(optarg, 0, 65535, &h.port) != 0 || h.port == 0)
				return die("--port wants 1..65535");
			break;
		case 'U':
			h.user = optarg;
			break;
		case 'I':
			h.idc = optarg;
			break;
		case 'G':
			if (h.ngroups == OM_MAX_GROUPS || !om_name_valid(optarg))
				return die("invalid or too many groups ('%s')", optarg);
			groups[h.ngroups++] = optarg;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || h.idc == NULL)
		return die("usage: omctl hosts add NAME --addr A --idc I [--port P] [--user U] "
		           "[--group G]...");
	h.name = argv[optind];
	if (!om_name_valid(h.name))
		return die("invalid host name '%s'", h.name);
	if (!om_name_valid(h.idc))
		return die("invalid IDC name '%s'", h.idc);
	if (h.addr == NULL)
		h.addr = h.name;
	if ((rv = connect_master(c)) != 0)
		return rv;
	return send_hosts(c, &h, 1);
}

static int
cmd_hosts_import(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"idc", required_argument, NULL, 'I'},
	        {NULL, 0, NULL, 0},
	};
	const char *def_idc = NULL;
	struct om_host *hosts = NULL;
	uint8_t *text;
	size_t len, n = 0;
	char err[512];
	int ch, rv;

	optind = 0; /* 0: glibc fully re-initialises getopt (main parsed with "+") */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'I')
			return usage(stderr), EXIT_USAGE;
		def_idc = optarg;
	}
	if (optind != argc - 1)
		return die("usage: omctl hosts import FILE [--idc DEFAULT]");
	if ((rv = om_read_file(argv[optind], 64 << 20, &text, &len)) != 0)
		return die("cannot read '%s': %s", argv[optind], om_strerror(rv));
	rv = om_inventory_parse_ini((const char *)text, len, def_idc, &hosts, &n, err, sizeof(err));
	om_free(text);
	if (rv != 0)
		return die("%s: %s", argv[optind], err);
	if ((rv = connect_master(c)) == 0)
		rv = send_hosts(c, hosts, n);
	om_hosts_free(hosts, n);
	return rv;
}

static int
cmd_hosts_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"target", required_argument, NULL, 't'},
	        {NULL, 0, NULL, 0},
	};
	struct om_msg req = {.type = OM_MSG_HOSTS_LIST}, rep;
	const char *sel = "all";
	uint32_t i, g;
	int ch, rv;

	optind = 0; /* 0: glibc fully re-initialises getopt (main parsed with "+") */
	while ((ch = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
		if (ch != 't')
			return usage(stderr), EXIT_USAGE;
		sel = optarg;
	}
	if (optind != argc)
		return die("usage: omctl hosts list [-t SELECTOR]");
	if ((rv = connect_master(c)) != 0)
		return rv;
	req.u.hosts_list.selector = (char *)sel;
	if ((rv = call(c, &req, &rep, OM_MSG_HOSTS)) != 0)
		return rv;
	if (!c->json)
		printf("%-24s %-16s %-6s %-12s %-8s %s\n", "NAME", "ADDRESS", "PORT", "USER", "IDC",
		       "GROUPS");
	for (i = 0; i < rep.u.hosts.nhosts; i++) {
		const struct om_host *h = &rep.u.hosts.hosts[i];
		if (c->json) {
			json_t *o = json_object(), *gs = json_array();
			json_object_set_new(o, "name", json_string(h->name));
			json_object_set_new(o, "addr", json_string(h->addr ? h->addr : ""));
			json_object_set_new(o, "port", json_integer(h->port));
			json_object_set_new(o, "user",
			                    h->user ? json_string(h->user) : json_null());
			json_object_set_new(o, "idc", json_string(h->idc ? h->idc : ""));
			for (g = 0; g < h->ngroups; g++)
				json_array_append_new(gs, json_string(h->groups[g]));
			json_object_set_new(o, "groups", gs);
			json_print(o);
			continue;
		}
		printf("%-24s %-16s %-6u %-12s %-8s ", h->name, h->addr ? h->addr : "-", h->port,
		       h->user ? h->user : "-", h->idc ? h->idc : "-");
		for (g = 0; g < h->ngroups; g++)
			printf("%s%s", g ? "," : "", h->groups[g]);
		putchar('\n');
	}
	om_msg_release(&rep);
	return 0;
}

static int
cmd_workers_list(struct ctl *c, int argc, char **argv)
{
	struct om_msg req = {.type = OM_MSG_WORKERS_LIST}, rep;
	uint32_t i;
	int rv;

	(void)argv;
	if (argc != 1)
		return die("usage: omctl workers list");
	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, &req, &rep, OM_MSG_WORKERS)) != 0)
		return rv;
	if (!c->json)
		printf("%-16s %-8s %-12s %-7s %-20s %s\n", "NAME", "IDC", "STATE", "RUNNING",
		       "LAST_SEEN", "FINGERPRINT");
	for (i = 0; i < rep.u.workers.nworkers; i++) {
		const struct om_worker_info *w = &rep.u.workers.workers[i];
		time_t t = (time_t)(w->last_seen_ms / 1000);
		struct tm tm;
		char when[32];
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "name", json_string(w->name));
			json_object_set_new(o, "idc", json_string(w->idc));
			json_object_set_new(o, "connected", json_boolean(w->connected));
			json_object_set_new(o, "running", json_integer(w->running));
			json_object_set_new(o, "last_seen", json_string(when));
			json_object_set_new(o, "fingerprint",
			                    json_string(w->fingerprint ? w->fingerprint : ""));
			json_print(o);
			continue;
		}
		printf("%-16s %-8s %-12s %-7u %-20s %.16s\n", w->name, w->idc,
		       w->connected ? "connected" : "disconnected", w->running, when,
		       w->fingerprint ? w->fingerprint : "-");
	}
	om_msg_release(&rep);
	return 0;
}

/* ------------------------------------------------------- administration */

/* "45s", "10m", "12h", "30d" or plain seconds; 0 on error. */
static uint64_t
parse_duration(const char *s)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || v == 0)
		return 0;
	if (*end == 's')
		mul = 1, end++;
	else if (*end == 'm')
		mul = 60, end++;
	else if (*end == 'h')
		mul = 3600, end++;
	else if (*end == 'd')
		mul = 86400, end++;
	if (*end != '\0' || v > UINT64_MAX / mul / 1000)
		return 0;
	return (uint64_t)v * mul;
}

static int
parse_id(const char *s, uint64_t *id)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v == 0)
		return -1;
	*id = v;
	return 0;
}

static void
print_table(struct ctl *c, const struct om_msg *t)
{
	uint32_t nc = t->u.table.ncolumns, nrows = nc ? t->u.table.ncells / nc : 0, r, k;
	int width[OM_MAX_TABLE_COLUMNS];

	if (c->json) {
		for (r = 0; r < nrows; r++) {
			json_t *o = json_object();
			for (k = 0; k < nc; k++) {
				const char *v = t->u.table.cells[r * nc + k];
				char key[256];
				size_t i;
				for (i = 0; t->u.table.columns[k][i] && i < sizeof(key) - 1; i++)
					key[i] = (char)(t->u.table.columns[k][i] | 0x20);
				key[i] = '\0';
				json_object_set_new(o, key, v ? json_string(v) : json_null());
			}
			json_print(o);
		}
		return;
	}
	for (k = 0; k < nc; k++) {
		width[k] = (int)strlen(t->u.table.columns[k]);
		for (r = 0; r < nrows; r++) {
			const char *v = t->u.table.cells[r * nc + k];
			int len = v ? (int)strlen(v) : 1;
			if (len > width[k])
				width[k] = len > 64 ? 64 : len;
		}
	}
	for (k = 0; k < nc; k++)
		printf("%-*s%s", k + 1 < nc ? width[k] : 0, t->u.table.columns[k],
		       k + 1 < nc ? "  " : "\n");
	for (r = 0; r < nrows; r++)
		for (k = 0; k < nc; k++) {
			const char *v = t->u.table.cells[r * nc + k];
			printf("%-*s%s", k + 1 < nc ? width[k] : 0, v ? v : "-",
			       k + 1 < nc ? "  " : "\n");
		}
}

/* Sends a request that answers with a TABLE and prints it. */
static int
table_call(struct ctl *c, const struct om_msg *req)
{
	struct om_msg rep;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, req, &rep, OM_MSG_TABLE)) != 0)
		return rv;
	print_table(c, &rep);
	om_msg_release(&rep);
	return 0;
}

/* Sends a request that answers with DONE and prints its text. */
static int
done_call(struct ctl *c, const struct om_msg *req, const char *what)
{
	struct om_msg rep;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, req, &rep, OM_MSG_DONE)) != 0)
		return rv;
	printf("%s: %s\n", what, rep.u.done.text ? rep.u.done.text : "done");
	om_msg_release(&rep);
	return 0;
}

/* Prints a secret alone on stdout (for scripts) and what it is on stderr. */
static int
secret_call(struct ctl *c, const struct om_msg *req, const char *what)
{
	struct om_msg rep;
	char when[32] = "never";
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, req, &rep, OM_MSG_SECRET)) != 0)
		return rv;
	if (rep.u.secret.expires_ms > 0) {
		time_t t = (time_t)(rep.u.secret.expires_ms / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_integer((json_int_t)rep.u.secret.id));
		json_object_set_new(o, "secret", json_string(rep.u.secret.secret));
		json_object_set_new(o, "expires", json_string(when));
		json_print(o);
	} else {
		printf("%s\n", rep.u.secret.secret);
		fprintf(stderr, "%s %llu, expires %s: shown once, store it now\n", what,
		        (unsigned long long)rep.u.secret.id, when);
	}
	om_wipe(rep.u.secret.secret, strlen(rep.u.secret.secret));
	om_msg_release(&rep);
	return 0;
}

/* A password from a file, or one line of standard input (echo off on a terminal). */
static int
read_password(const char *file, char *out, size_t cap)
{
	size_t len;

	if (file != NULL) {
		uint8_t *data;
		int rv;
		if ((rv = om_read_file(file, cap - 1, &data, &len)) != 0)
			return die("cannot read password file '%s': %s", file, om_strerror(rv));
		memcpy(out, data, len);
		om_wipe(data, len);
		om_free(data);
	} else {
		struct termios old, quiet;
		bool tty = isatty(STDIN_FILENO);
		if (tty) {
			fprintf(stderr, "password: ");
			tcgetattr(STDIN_FILENO, &old);
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		}
		if (fgets(out, (int)cap, stdin) == NULL)
			out[0] = '\0';
		if (tty) {
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
			fputc('\n', stderr);
		}
		len = strlen(out);
	}
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
		len--;
	out[len] = '\0';
	if (len < 8)
		return die("the password must have at least 8 characters");
	return 0;
}

static int
cmd_keys(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"fingerprint", required_argument, NULL, 'F'},
	        {"idc", required_argument, NULL, 'I'},
	        {"ttl", required_argument, NULL, 'T'},
	        {NULL, 0, NULL, 0},
	};
	struct om_msg req;
	const char *fp = NULL, *idc = NULL, *ttl = NULL;
	const char *sub = argv[0];
	int ch;

	memset(&req, 0, sizeof(req));
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'F')
			fp = optarg;
		else if (ch == 'I')
			idc = optarg;
		else if (ch == 'T')
			ttl = optarg;
		else
			return usage(stderr), EXIT_USAGE;
	}
	if (strcmp(sub, "list") == 0 && optind == argc) {
		req.type = OM_MSG_KEYS_LIST;
		return table_call(c, &req);
	}
	if (strcmp(sub, "enroll-token") == 0 && optind == argc) {
		if (idc == NULL || ttl == NULL || !om_name_valid(idc) ||
		    (req.u.enroll.ttl_s = parse_duration(ttl)) == 0)
			return die("usage: omctl keys enroll-token --idc NAME --ttl DURATION");
		req.type = OM_MSG_ENROLL_CREATE;
		req.u.enroll.idc = (char *)idc;
		return secret_call(c, &req, "enrollment token");
	}
	req.type = OM_MSG_KEY_SET;
	if (strcmp(sub, "accept") == 0)
		req.u.key_set.state = OM_KEY_ACCEPTED;
	else if (strcmp(sub, "reject") == 0)
		req.u.key_set.state = OM_KEY_REJECTED;
	else if (strcmp(sub, "revoke") == 0)
		req.u.key_set.state = OM_KEY_REVOKED;
	else
		return usage(stderr), EXIT_USAGE;
	if (optind != argc - 1 || parse_id(argv[optind], &req.u.key_set.id) != 0)
		return die("usage: omctl keys %s ID%s", sub,
		           req.u.key_set.state == OM_KEY_ACCEPTED ? " [--fingerprint F]" : "");
	req.u.key_set.fingerprint = (char *)fp;
	return done_call(c, &req, "key");
}

static int
cmd_users(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"role", required_argument, NULL, 'R'},
	        {"idc", required_argument, NULL, 'I'},
	        {"group", required_argument, NULL, 'G'},
	        {"module", required_argument, NULL, 'M'},
	        {"password-file", required_argument, NULL, 'P'},
	        {NULL, 0, NULL, 0},
	};
	char *idcs[OM_MAX_GROUPS], *groups[OM_MAX_GROUPS], *modules[OM_MAX_GROUPS];
	char password[OM_MAX_SECRET + 2];
	const char *sub = argv[0], *pwfile = NULL;
	struct om_msg req;
	int ch, rv;

	memset(&req, 0, sizeof(req));
	req.u.user.idcs = idcs;
	req.u.user.groups = groups;
	req.u.user.modules = modules;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'R':
			req.u.user.role = optarg;
			break;
		case 'I':
		case 'G':
		case 'M': {
			char **v = ch == 'I' ? idcs : ch == 'G' ? groups : modules;
			uint32_t *n = ch == 'I'   ? &req.u.user.nidcs
			              : ch == 'G' ? &req.u.user.ngroups
			                          : &req.u.user.nmodules;
			if (*n == OM_MAX_GROUPS || !om_name_valid(optarg))
				return die("invalid or too many names ('%s')", optarg);
			v[(*n)++] = optarg;
			break;
		}
		case 'P':
			pwfile = optarg;
			break;
		default:
			return usage(stderr), EXIT_USAGE;
		}
	}
	if (strcmp(sub, "list") == 0 && optind == argc) {
		req.type = OM_MSG_USERS_LIST;
		return table_call(c, &req);
	}
	if (optind != argc - 1 || !om_name_valid(argv[optind]))
		return die("usage: omctl users %s NAME ...", sub);
	req.u.user.name = argv[optind];
	if (strcmp(sub, "add") == 0 || strcmp(sub, "passwd") == 0) {
		if (strcmp(sub, "add") == 0 && req.u.user.role == NULL)
			return die("usage: omctl users add NAME --role admin|operator|viewer ...");
		if ((rv = read_password(pwfile, password, sizeof(password))) != 0)
			return rv;
		req.type = strcmp(sub, "add") == 0 ? OM_MSG_USER_ADD : OM_MSG_USER_PASSWD;
		req.u.user.password = password;
		rv = done_call(c, &req, req.u.user.name);
		om_wipe(password, sizeof(password));
		return rv;
	}
	if (strcmp(sub, "disable") == 0 || strcmp(sub, "enable") == 0) {
		req.type = OM_MSG_USER_DISABLE;
		req.u.user.flag = strcmp(sub, "disable") == 0;
		return done_call(c, &req, req.u.user.name);
	}
	return usage(stderr), EXIT_USAGE;
}

static int
cmd_tokens(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"name", required_argument, NULL, 'N'},
	        {"scope", required_argument, NULL, 'S'},
	        {"ttl", required_argument, NULL, 'T'},
	        {"user", required_argument, NULL, 'U'},
	        {NULL, 0, NULL, 0},
	};
	char scopebuf[256], *scopes[OM_MAX_SCOPES], *save = NULL, *tok;
	const char *sub = argv[0];
	struct om_msg req;
	int ch;

	memset(&req, 0, sizeof(req));
	snprintf(scopebuf, sizeof(scopebuf), "read,run");
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'N':
			req.u.token.name = optarg;
			break;
		case 'S':
			if (strlen(optarg) >= sizeof(scopebuf))
				return die("--scope is too long");
			snprintf(scopebuf, sizeof(scopebuf), "%s", optarg);
			break;
		case 'T':
			if ((req.u.token.ttl_s = parse_duration(optarg)) == 0)
				return die("--ttl wants a duration like 30d");
			break;
		case 'U':
			req.u.token.user = optarg;
			break;
		default:
			return usage(stderr), EXIT_USAGE;
		}
	}
	if (strcmp(sub, "list") == 0 && optind == argc) {
		req.type = OM_MSG_TOKENS_LIST;
		return table_call(c, &req);
	}
	if (strcmp(sub, "revoke") == 0) {
		req.type = OM_MSG_TOKEN_REVOKE;
		if (optind != argc - 1 || parse_id(argv[optind], &req.u.by_id.id) != 0)
			return die("usage: omctl tokens revoke ID");
		return done_call(c, &req, "token");
	}
	if (strcmp(sub, "create") != 0 || optind != argc)
		return usage(stderr), EXIT_USAGE;
	if (req.u.token.name == NULL || !om_name_valid(req.u.token.name))
		return die("usage: omctl tokens create --name NAME [--scope read,run] [--ttl 30d]");
	for (tok = strtok_r(scopebuf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (req.u.token.nscopes == OM_MAX_SCOPES)
			return die("too many scopes");
		scopes[req.u.token.nscopes++] = tok;
	}
	req.type = OM_MSG_TOKEN_CREATE;
	req.u.token.scopes = scopes;
	return secret_call(c, &req, "token");
}

static int
cmd_audit(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"since", required_argument, NULL, 'S'},
	        {"limit", required_argument, NULL, 'L'},
	        {NULL, 0, NULL, 0},
	};
	const char *sub = argv[0];
	struct om_msg req, rep;
	uint64_t since;
	int ch, rv;

	memset(&req, 0, sizeof(req));
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'S') {
			if ((since = parse_duration(optarg)) == 0)
				return die("--since wants a duration like 1h");
			req.u.audit.since_ms = om_wall_ms() - (int64_t)since * 1000;
		} else if (ch == 'L') {
			if (om_parse_u32(optarg, 0, 100000, &req.u.audit.limit) != 0)
				return die("--limit wants a number");
		} else {
			return usage(stderr), EXIT_USAGE;
		}
	}
	if (optind != argc)
		return usage(stderr), EXIT_USAGE;
	if (strcmp(sub, "list") == 0) {
		req.type = OM_MSG_AUDIT_LIST;
		return table_call(c, &req);
	}
	if (strcmp(sub, "verify") != 0)
		return usage(stderr), EXIT_USAGE;
	if ((rv = connect_master(c)) != 0)
		return rv;
	req.type = OM_MSG_AUDIT_VERIFY;
	if ((rv = om_rpc_call(c->rpc, &req, &rep, CALL_TIMEOUT_MS * 4)) != 0)
		return die("request to master failed: %s", om_strerror(rv));
	if (rep.type == OM_MSG_ERROR) {
		/* A broken chain is a finding, not a usage error: exit 1. */
		fprintf(stderr, "omctl: %s\n", rep.u.error.text ? rep.u.error.text : "failed");
		rv = rep.u.error.code == OM_ECRYPTO ? EXIT_NOT_OK : EXIT_USAGE;
		om_msg_release(&rep);
		return rv;
	}
	if (rep.type != OM_MSG_DONE) {
		om_msg_release(&rep);
		return die("unexpected answer from master");
	}
	printf("audit log: %s\n", rep.u.done.text ? rep.u.done.text : "ok");
	om_msg_release(&rep);
	return 0;
}

/* ------------------------------------------------------------ jobs, host details */

static int
cmd_hosts_show(struct ctl *c, int argc, char **argv)
{
	struct om_msg req = {.type = OM_MSG_HOST_SHOW}, rep;
	uint32_t nrows, i;
	bool facts = false;
	int rv;

	if (argc != 2 || !om_name_valid(argv[1]))
		return die("usage: omctl hosts show NAME");
	if ((rv = connect_master(c)) != 0)
		return rv;
	req.u.by_name.name = argv[1];
	if ((rv = call(c, &req, &rep, OM_MSG_TABLE)) != 0)
		return rv;
	if (!c->json || rep.u.table.ncolumns != 2) {
		print_table(c, &rep);
		om_msg_release(&rep);
		return 0;
	}
	/* One object: the inventory fields, then every row after facts_at under "facts". */
	json_t *o = json_object(), *f = json_object();
	nrows = rep.u.table.ncells / 2;
	for (i = 0; i < nrows; i++) {
		const char *k = rep.u.table.cells[2 * i], *v = rep.u.table.cells[2 * i + 1];
		json_t *val;
		if (k == NULL)
			continue;
		if (facts) {
			/* compact JSON from the master; a value cut to fit a cell stays text */
			val = v ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;
			json_object_set_new(f, k, val ? val : v ? json_string(v) : json_null());
			continue;
		}
		if (strcmp(k, "port") == 0 && v != NULL) {
			val = json_integer(strtoll(v, NULL, 10));
		} else if (strcmp(k, "groups") == 0) {
			char *copy = v ? om_strdup(v) : NULL, *save = NULL, *g;
			val = json_array();
			for (g = copy ? strtok_r(copy, ",", &save) : NULL; g;
			     g = strtok_r(NULL, ",", &save))
				json_array_append_new(val, json_string(g));
			om_free(copy);
		} else {
			val = v ? json_string(v) : json_null();
		}
		json_object_set_new(o, k, val);
		if (strcmp(k, "facts_at") == 0)
			facts = true;
	}
	json_object_set_new(o, "facts", f);
	json_print(o);
	om_msg_release(&rep);
	return 0;
}

static int
job_cancel(struct ctl *c, uint64_t id)
{
	struct om_msg req = {.type = OM_MSG_JOB_CANCEL}, rep;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	req.u.by_id.id = id;
	if ((rv = om_rpc_call(c->rpc, &req, &rep, CALL_TIMEOUT_MS)) != 0)
		return die("request to master failed: %s", om_strerror(rv));
	if (rep.type == OM_MSG_ERROR && rep.u.error.code == OM_EINVAL) {
		/* Finished already: what a cancel wants is true, say so and succeed. */
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "job", json_integer((json_int_t)id));
			json_object_set_new(o, "hosts", json_integer(0));
			json_object_set_new(o, "text", json_string(rep.u.error.text ? rep.u.error.text
			                                                            : "finished"));
			json_print(o);
		} else {
			printf("%s: nothing to cancel\n",
			       rep.u.error.text ? rep.u.error.text : "finished");
		}
		om_msg_release(&rep);
		return 0;
	}
	if (rep.type == OM_MSG_ERROR) {
		die("%s", rep.u.error.text ? rep.u.error.text : om_strerror(rep.u.error.code));
		om_msg_release(&rep);
		return EXIT_USAGE;
	}
	if (rep.type != OM_MSG_DONE) {
		om_msg_release(&rep);
		return die("unexpected answer from master");
	}
	if (c->json) {
		json_t *o = json_object();
		json_object_set_new(o, "job", json_integer((json_int_t)id));
		json_object_set_new(o, "hosts", json_integer((json_int_t)rep.u.done.count));
		json_object_set_new(o, "text", json_string(rep.u.done.text ? rep.u.done.text : ""));
		json_print(o);
	} else {
		printf("%s\n", rep.u.done.text ? rep.u.done.text : "cancelled");
	}
	om_msg_release(&rep);
	return 0;
}

/* Where one host's fetched file goes, from its result; false when it has none. */
struct fetch_target {
	char *path;
	uint64_t size, written;
	int fd;
	bool opened;
};

/* A file name from the result: the last part of dest_name or fetched, if safe. */
static bool
fetch_name(const char *result, char *name, size_t cap, uint64_t *size)
{
	json_t *o = result ? json_loads(result, 0, NULL) : NULL, *n, *sz;
	const char *s, *base;
	bool ok = false;

	if (o == NULL)
		return false;
	n = json_object_get(o, "dest_name");
	if (!json_is_string(n))
		n = json_object_get(o, "fetched");
	sz = json_object_get(o, "size");
	if (json_is_string(n) && json_is_integer(sz) && json_integer_value(sz) >= 0) {
		s = json_string_value(n);
		base = strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
		ok = *base && strcmp(base, ".") != 0 && strcmp(base, "..") != 0 &&
		     strlen(base) < cap;
		if (ok) {
			snprintf(name, cap, "%s", base);
			*size = (uint64_t)json_integer_value(sz);
		}
	}
	json_decref(o);
	return ok;
}

/* Reads every event of job (files: with stream 3) and hands each to fn. */
static int
job_events(struct ctl *c, uint64_t job, bool files,
           int (*fn)(struct ctl *, const struct om_event *, void *), void *arg)
{
	uint64_t cursor = 0;

	return follow_events(c, job, &cursor, files ? FOLLOW_FILES : 0, 0, fn, arg);
}

/* Pass 1: the final state and result of every host. */
static int
fetch_state(struct ctl *c, const struct om_event *e, void *arg)
{
	struct hoststate *h;

	(void)c;
	if (e->kind != OM_EV_STATE || e->host == NULL || !om_host_state_final((int)e->state))
		return 0;
	if ((h = hosttab_get(arg, e->host)) == NULL)
		return die("out of memory");
	h->final = true;
	h->state = e->state;
	om_free(h->reason);
	om_free(h->result);
	h->reason = e->reason ? om_strdup(e->reason) : NULL;
	h->result = e->result ? om_strdup(e->result) : NULL;
	return 0;
}

struct fetch {
	struct hosttab *tab;
	struct fetch_target *targets; /* parallel to the sorted host list */
	struct hoststate **list;
	size_t n;
};

static struct fetch_target *
fetch_find(struct fetch *f, const char *host)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int d = strcmp(f->list[mid]->name, host);
		if (d == 0)
			return f->targets[mid].path ? &f->targets[mid] : NULL;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Pass 2: file bytes into their files, never past the size the host reported. */
static int
fetch_bytes(struct ctl *c, const struct om_event *e, void *arg)
{
	struct fetch *f = arg;
	struct fetch_target *t;
	size_t take;

	(void)c;
	if (e->kind != OM_EV_OUTPUT || e->stream != OM_STREAM_FILE || e->host == NULL ||
	    (t = fetch_find(f, e->host)) == NULL || t->written >= t->size)
		return 0;
	if (!t->opened) {
		t->fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (t->fd < 0)
			return die("cannot create '%s': %s", t->path, strerror(errno));
		t->opened = true;
	}
	take = e->len;
	if (take > t->size - t->written)
		take = (size_t)(t->size - t->written);
	if (write_all(t->fd, e->data, take) != 0)
		return die("cannot write '%s': %s", t->path, strerror(errno));
	t->written += take;
	if (t->written == t->size) {
		close(t->fd);
		t->fd = -1;
	}
	return 0;
}

static int
make_dir(const char *path)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return die("cannot create directory '%s': %s", path, strerror(errno));
	return 0;
}

static int
job_fetch(struct ctl *c, uint64_t id, const char *dest)
{
	struct hosttab tab = {0};
	struct fetch f = {&tab, NULL, NULL, 0};
	uint64_t bytes = 0;
	size_t i, nfiles = 0;
	char name[256];
	int rv;

	if ((rv = make_dir(dest)) != 0 || (rv = connect_master(c)) != 0)
		return rv;
	/* Names and sizes come with the final states, after the bytes: read
	 * those first, so every byte goes straight to its file. */
	if ((rv = job_events(c, id, false, fetch_state, &tab)) != 0)
		goto out;
	f.list = om_calloc(tab.n + 1, sizeof(*f.list));
	f.targets = om_calloc(tab.n + 1, sizeof(*f.targets));
	if (f.list == NULL || f.targets == NULL) {
		rv = die("out of memory");
		goto out;
	}
	for (i = 0; i < tab.cap; i++)
		if (tab.slots[i] != NULL)
			f.list[f.n++] = tab.slots[i];
	qsort(f.list, f.n, sizeof(*f.list), cmp_host);
	for (i = 0; i < f.n; i++) {
		struct hoststate *h = f.list[i];
		struct fetch_target *t = &f.targets[i];
		size_t len;
		t->fd = -1;
		if (h->state != OM_HS_OK || !fetch_name(h->result, name, sizeof(name), &t->size))
			continue;
		len = strlen(dest) + strlen(h->name) + strlen(name) + 3;
		if ((t->path = om_malloc(len)) == NULL) {
			rv = die("out of memory");
			goto out;
		}
		snprintf(t->path, len, "%s/%s", dest, h->name);
		if ((rv = make_dir(t->path)) != 0)
			goto out;
		snprintf(t->path, len, "%s/%s/%s", dest, h->name, name);
	}
	if ((rv = job_events(c, id, true, fetch_bytes, &f)) != 0)
		goto out;
	for (i = 0; i < f.n; i++) {
		struct hoststate *h = f.list[i];
		struct fetch_target *t = &f.targets[i];
		if (t->path != NULL && !t->opened) {
			/* an empty file sends no bytes */
			t->fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			             0644);
			if (t->fd < 0) {
				rv = die("cannot create '%s': %s", t->path, strerror(errno));
				goto out;
			}
			t->opened = true;
		}
		if (c->json) {
			json_t *o = json_object();
			json_object_set_new(o, "event", json_string("file"));
			json_object_set_new(o, "host", json_string(h->name));
			json_object_set_new(o, "state",
			                    json_string(om_host_state_name((int)h->state)));
			json_object_set_new(o, "path",
			                    t->path ? json_string(t->path) : json_null());
			json_object_set_new(o, "bytes", json_integer((json_int_t)t->written));
			json_object_set_new(o, "size", json_integer((json_int_t)t->size));
			json_print(o);
		} else if (t->path == NULL) {
			printf("%s: no file (%s%s%s)\n", h->name, om_host_state_name((int)h->state),
			       h->reason ? ": " : "", h->reason ? h->reason : "");
		} else if (t->written < t->size) {
			printf("%s: %s incomplete: %llu of %llu bytes stored\n", h->name, t->path,
			       (unsigned long long)t->written, (unsigned long long)t->size);
		} else {
			printf("%s: %llu bytes -> %s\n", h->name, (unsigned long long)t->written,
			       t->path);
		}
		if (t->path != NULL && t->written == t->size)
			nfiles++;
		bytes += t->written;
	}
	if (!c->json)
		printf("fetched %zu of %zu files, %llu bytes\n", nfiles, f.n,
		       (unsigned long long)bytes);
	rv = nfiles == f.n ? 0 : EXIT_NOT_OK;
out:
	for (i = 0; f.targets != NULL && i < f.n; i++) {
		if (f.targets[i].fd >= 0)
			close(f.targets[i].fd);
		om_free(f.targets[i].path);
	}
	om_free(f.targets);
	om_free(f.list);
	hosttab_free(&tab);
	return rv;
}

/* ----------------------------------------------------------- job history */

/* The cell under column name in row r of a TABLE reply; NULL when nil or no such column. */
static const char *
cell_of(const struct om_msg *t, uint32_t r, const char *name)
{
	uint32_t k, nc = t->u.table.ncolumns;

	for (k = 0; k < nc; k++)
		if (strcmp(t->u.table.columns[k], name) == 0)
			return t->u.table.cells[r * nc + k];
	return NULL;
}

/* A number cell into *v; false when nil or not a number. */
static bool
cell_int(const struct om_msg *t, uint32_t r, const char *name, long long *v)
{
	const char *s = cell_of(t, r, name);
	char *end;

	if (s == NULL)
		return false;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno == 0 && end != s && *end == '\0';
}

static json_t *
json_int_or_null(const struct om_msg *t, uint32_t r, const char *name)
{
	long long v;

	return cell_int(t, r, name, &v) ? json_integer((json_int_t)v) : json_null();
}

static json_t *
json_str_or_null(const struct om_msg *t, uint32_t r, const char *name)
{
	const char *s = cell_of(t, r, name);

	return s != NULL ? json_string(s) : json_null();
}

/* The job TABLE's column of a host state: its name in capitals. */
static void
state_column(int state, char *out, size_t cap)
{
	const char *s = om_host_state_name(state);
	size_t i;

	for (i = 0; s[i] && i + 1 < cap; i++)
		out[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A' : s[i]);
	out[i] = '\0';
}

/* "ok 8 failed 1": the non-zero host counts of job row r in state order ("-" when none). */
static const char *
counts_text(const struct om_msg *t, uint32_t r, char *buf, size_t cap)
{
	char col[32];
	long long n;
	size_t o = 0;
	int s;

	buf[0] = '\0';
	for (s = 0; s < OM_HS_COUNT_ && o < cap; s++) {
		state_column(s, col, sizeof(col));
		if (cell_int(t, r, col, &n) && n > 0)
			o += (size_t)snprintf(buf + o, cap - o, "%s%s %lld", o ? " " : "",
			                      om_host_state_name(s), n);
	}
	return o ? buf : "-";
}

/* The same counts as a JSON object, in state order. */
static json_t *
counts_json(const struct om_msg *t, uint32_t r)
{
	json_t *o = json_object();
	char col[32];
	long long n;
	int s;

	for (s = 0; s < OM_HS_COUNT_; s++) {
		state_column(s, col, sizeof(col));
		if (cell_int(t, r, col, &n) && n > 0)
			json_object_set_new(o, om_host_state_name(s), json_integer((json_int_t)n));
	}
	return o;
}

/* Row r of a job TABLE as a JSON object, without its hosts. */
static json_t *
job_json(const struct om_msg *t, uint32_t r)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_int_or_null(t, r, "ID"));
	json_object_set_new(o, "created", json_str_or_null(t, r, "CREATED"));
	json_object_set_new(o, "user", json_str_or_null(t, r, "USER"));
	json_object_set_new(o, "module", json_str_or_null(t, r, "MODULE"));
	json_object_set_new(o, "selector", json_str_or_null(t, r, "SELECTOR"));
	json_object_set_new(o, "state", json_str_or_null(t, r, "STATE"));
	json_object_set_new(o, "finished", json_str_or_null(t, r, "FINISHED"));
	json_object_set_new(o, "duration_ms", json_int_or_null(t, r, "DURATION_MS"));
	json_object_set_new(o, "retry_lost", json_str_or_null(t, r, "RETRY_LOST"));
	json_object_set_new(o, "counts", counts_json(t, r));
	return o;
}

/* A JSON object cell (PARAMS, OPTIONS of job show) parsed; NULL when nil or not an object. */
static json_t *
cell_object(const struct om_msg *t, uint32_t r, const char *name)
{
	const char *s = cell_of(t, r, name);
	json_t *o = s != NULL ? json_loads(s, JSON_REJECT_DUPLICATES, NULL) : NULL;

	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/*
 * An object cell as "k=v k=v" for a person: strings with control bytes
 * replaced, null as nulltext; "-" when the cell is nil or empty.
 */
static const char *
object_text(const struct om_msg *t, uint32_t r, const char *name, const char *nulltext, char *buf,
            size_t cap)
{
	json_t *o = cell_object(t, r, name), *v;
	const char *key;
	size_t off = 0;

	buf[0] = '\0';
	json_object_foreach(o, key, v)
	{
		char val[OM_MAX_TEXT + 1];
		if (json_is_string(v))
			printable(json_string_value(v), val, sizeof(val));
		else if (json_is_integer(v))
			snprintf(val, sizeof(val), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		else if (json_is_boolean(v))
			snprintf(val, sizeof(val), "%s", json_is_true(v) ? "yes" : "no");
		else
			snprintf(val, sizeof(val), "%s", nulltext);
		if (off < cap)
			off += (size_t)snprintf(buf + off, cap - off, "%s%s=%s", off ? " " : "",
			                        key, val);
	}
	json_decref(o);
	return buf[0] ? buf : "-";
}

/* Milliseconds as "12.34 s"; "-" when unknown. */
static const char *
seconds_text(const struct om_msg *t, uint32_t r, const char *col, char *buf, size_t cap)
{
	long long ms;

	if (!cell_int(t, r, col, &ms) || ms < 0)
		return "-";
	snprintf(buf, cap, "%.2f s", (double)ms / 1000.0);
	return buf;
}

/*
 * Every host of job id in state, a page at a time in name order: printed,
 * or appended to arr (--json).  Prints why and returns 2 on failure.
 */
static int
job_hosts_in(struct ctl *c, uint64_t id, int state, json_t *arr)
{
	char after[OM_MAX_NAME + 1] = "", b1[OM_MAX_TEXT + 1], b2[OM_MAX_NAME + 1], b3[32], b4[32];
	uint32_t nrows, i;
	int rv;

	do {
		struct om_msg req = {.type = OM_MSG_JOB_HOSTS}, rep;
		const char *last = NULL;

		req.u.job_hosts.job_id = id;
		req.u.job_hosts.state = (uint32_t)state;
		req.u.job_hosts.after = after[0] ? after : NULL;
		req.u.job_hosts.limit = OM_MAX_JOB_ROWS;
		if ((rv = call(c, &req, &rep, OM_MSG_TABLE)) != 0)
			return rv;
		nrows = rep.u.table.ncells / rep.u.table.ncolumns;
		for (i = 0; i < nrows; i++) {
			const char *name = cell_of(&rep, i, "HOST");
			const char *exit_s = cell_of(&rep, i, "EXIT");
			const char *prev = last != NULL ? last : after[0] ? after : NULL;

			/* pages go forward by name (byte order), or the loop would not end */
			if (name == NULL || !om_name_valid(name) ||
			    (prev != NULL && strcmp(name, prev) <= 0)) {
				om_msg_release(&rep);
				return die("unexpected answer from master");
			}
			last = name;
			if (arr != NULL) {
				json_t *o = json_object();
				const char *sn = om_host_state_name(state);
				json_object_set_new(o, "name", json_string(name));
				json_object_set_new(o, "state", json_string(sn));
				json_object_set_new(o, "exit", json_int_or_null(&rep, i, "EXIT"));
				json_object_set_new(o, "duration_ms",
				                    json_int_or_null(&rep, i, "DURATION_MS"));
				json_object_set_new(o, "worker",
				                    json_str_or_null(&rep, i, "WORKER"));
				json_object_set_new(o, "reason",
				                    json_str_or_null(&rep, i, "REASON"));
				json_array_append_new(arr, o);
				continue;
			}
			printf("%-24s %-11s %-4s %-9s %-16s %s\n", name, om_host_state_name(state),
			       printable(exit_s, b3, sizeof(b3)),
			       seconds_text(&rep, i, "DURATION_MS", b4, sizeof(b4)),
			       printable(cell_of(&rep, i, "WORKER"), b2, sizeof(b2)),
			       printable(cell_of(&rep, i, "REASON"), b1, sizeof(b1)));
		}
		if (last != NULL)
			snprintf(after, sizeof(after), "%s", last);
		om_msg_release(&rep);
	} while (nrows == OM_MAX_JOB_ROWS);
	return 0;
}

/* job show ID [--state S]: the job, its host counts, then its hosts by state and name. */
static int
job_show(struct ctl *c, uint64_t id, int only)
{
	struct om_msg req = {.type = OM_MSG_JOB_SHOW}, rep;
	char b1[OM_MAX_TEXT + 1], b2[512], b3[32];
	json_t *o = NULL, *hosts = NULL;
	int rv, s;

	if ((rv = connect_master(c)) != 0)
		return rv;
	req.u.by_id.id = id;
	if ((rv = call(c, &req, &rep, OM_MSG_TABLE)) != 0)
		return rv;
	if (rep.u.table.ncells != rep.u.table.ncolumns || cell_of(&rep, 0, "ID") == NULL) {
		om_msg_release(&rep);
		return die("unexpected answer from master");
	}
	if (c->json) {
		json_t *params = cell_object(&rep, 0, "PARAMS"), *options;
		o = job_json(&rep, 0);
		options = cell_object(&rep, 0, "OPTIONS");
		json_object_set_new(o, "params", params ? params : json_null());
		json_object_set_new(o, "options", options ? options : json_null());
		hosts = json_array();
	} else {
		printf("job:       %s\n", printable(cell_of(&rep, 0, "ID"), b2, sizeof(b2)));
		printf("module:    %s\n", printable(cell_of(&rep, 0, "MODULE"), b2, sizeof(b2)));
		printf("selector:  %s\n", printable(cell_of(&rep, 0, "SELECTOR"), b1, sizeof(b1)));
		printf("user:      %s\n", printable(cell_of(&rep, 0, "USER"), b2, sizeof(b2)));
		printf("created:   %s\n", printable(cell_of(&rep, 0, "CREATED"), b2, sizeof(b2)));
		printf("state:     %s\n", printable(cell_of(&rep, 0, "STATE"), b2, sizeof(b2)));
		printf("finished:  %s\n", printable(cell_of(&rep, 0, "FINISHED"), b2, sizeof(b2)));
		printf("duration:  %s\n", seconds_text(&rep, 0, "DURATION_MS", b3, sizeof(b3)));
		/* a master older than schema 6 does not say */
		if (cell_of(&rep, 0, "RETRY_LOST") != NULL)
			printf("retry lost: %s\n",
			       printable(cell_of(&rep, 0, "RETRY_LOST"), b2, sizeof(b2)));
		/* secrets come as "********" from the master (jobview.c) */
		if (cell_of(&rep, 0, "PARAMS") != NULL)
			printf("params:    %s\n",
			       object_text(&rep, 0, "PARAMS", "(too long to show)", b1,
			                   sizeof(b1)));
		if (cell_of(&rep, 0, "OPTIONS") != NULL)
			printf("options:   %s\n",
			       object_text(&rep, 0, "OPTIONS", "-", b2, sizeof(b2)));
		printf("hosts:     %s\n", counts_text(&rep, 0, b2, sizeof(b2)));
		printf("\n%-24s %-11s %-4s %-9s %-16s %s\n", "HOST", "STATE", "EXIT", "DURATION",
		       "WORKER", "REASON");
	}
	om_msg_release(&rep);
	for (s = 0, rv = 0; s < OM_HS_COUNT_ && rv == 0; s++)
		if (only < 0 || s == only)
			rv = job_hosts_in(c, id, s, hosts);
	if (c->json) {
		if (rv == 0) {
			json_object_set_new(o, "hosts", hosts);
			json_print(o);
		} else {
			json_decref(hosts);
			json_decref(o);
		}
	}
	return rv;
}

/* Prints every host's unfinished last line, hosts by name. */
static int
flush_all(struct ctl *c, struct hosttab *t)
{
	struct hoststate **list;
	size_t i, n = 0;

	if ((list = om_calloc(t->n + 1, sizeof(*list))) == NULL)
		return die("out of memory");
	for (i = 0; i < t->cap; i++)
		if (t->slots[i] != NULL)
			list[n++] = t->slots[i];
	qsort(list, n, sizeof(*list), cmp_host);
	for (i = 0; i < n; i++)
		flush_partial(c, list[i]);
	om_free(list);
	return 0;
}

/*
 * job output ID [--host H]: the stored output in event order.  Every host:
 * line by line through run's printer ("host | line", "host ! line" for
 * stderr, or --json objects).  One host without --json: the bytes exactly as
 * stored, stdout's to stdout and stderr's to stderr, nothing added.
 */
static int
job_output(struct ctl *c, uint64_t id, const char *host)
{
	bool raw = host != NULL && !c->json, done = false;
	struct hosttab tab = {0};
	FILE *last = NULL;
	uint64_t cursor = 0;
	uint32_t i;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	while (!done && rv == 0) {
		struct om_msg req = {.type = OM_MSG_JOB_OUTPUT}, rep;

		req.u.job_output.job_id = id;
		req.u.job_output.cursor = cursor;
		req.u.job_output.host = (char *)host;
		if ((rv = call(c, &req, &rep, OM_MSG_EVENTS)) != 0)
			break;
		for (i = 0; i < rep.u.events.nevents && rv == 0; i++) {
			const struct om_event *e = &rep.u.events.events[i];
			struct hoststate *h;

			if (e->kind != OM_EV_OUTPUT || e->host == NULL || e->len == 0 ||
			    (e->stream != OM_STREAM_STDOUT && e->stream != OM_STREAM_STDERR))
				continue;
			if (raw) {
				FILE *f = e->stream == OM_STREAM_STDERR ? stderr : stdout;
				/* on a shared terminal the two streams keep their order */
				if (last != NULL && last != f)
					fflush(last);
				fwrite(e->data, 1, e->len, f);
				last = f;
			} else if ((h = hosttab_get(&tab, e->host)) == NULL) {
				rv = die("out of memory");
			} else {
				feed_output(c, h, (int)e->stream, e->data, e->len);
			}
		}
		/* a cursor that does not move would repeat this page forever */
		if (rv == 0 && !rep.u.events.done && rep.u.events.cursor <= cursor)
			rv = die("unexpected answer from master");
		cursor = rep.u.events.cursor;
		done = rep.u.events.done;
		om_msg_release(&rep);
	}
	if (rv == 0 && !raw)
		rv = flush_all(c, &tab);
	hosttab_free(&tab);
	if (fflush(stdout) != 0 && rv == 0)
		rv = die("cannot write the output: %s", strerror(errno));
	return rv;
}

/* jobs list [--state running|done] [--user NAME] [--since DURATION] [--limit N] */
static int
cmd_jobs_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"state", required_argument, NULL, 'S'}, {"user", required_argument, NULL, 'U'},
	        {"since", required_argument, NULL, 'W'}, {"limit", required_argument, NULL, 'L'},
	        {NULL, 0, NULL, 0},
	};
	struct om_msg req = {.type = OM_MSG_JOBS_LIST}, rep;
	char id[32], created[64], user[OM_MAX_NAME + 1], module[OM_MAX_NAME + 1], hosts[32];
	char state[32], counts[512];
	uint32_t nrows, r;
	int ch, rv;

	req.u.jobs_list.limit = 50;
	optind = 0; /* 0: glibc fully re-initialises getopt (main parsed with "+") */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			if (strcmp(optarg, "running") == 0)
				req.u.jobs_list.state = OM_JOBS_RUNNING;
			else if (strcmp(optarg, "done") == 0)
				req.u.jobs_list.state = OM_JOBS_DONE;
			else
				return die("--state wants running or done");
			break;
		case 'U':
			if (!om_name_valid(optarg))
				return die("invalid user name '%s'", optarg);
			req.u.jobs_list.user = optarg;
			break;
		case 'W':
			if ((req.u.jobs_list.since_s = parse_duration(optarg)) == 0)
				return die("--since wants a duration like 10m, 2h or 7d");
			break;
		case 'L':
			if (om_parse_u32(optarg, 1, OM_MAX_JOB_ROWS, &req.u.jobs_list.limit) != 0)
				return die("--limit wants 1..%d", OM_MAX_JOB_ROWS);
			break;
		default:
			return usage(stderr), EXIT_USAGE;
		}
	}
	if (optind != argc)
		return die("usage: omctl jobs list [--state running|done] [--user NAME] "
		           "[--since DURATION] [--limit N]");
	if ((rv = connect_master(c)) != 0)
		return rv;
	if ((rv = call(c, &req, &rep, OM_MSG_TABLE)) != 0)
		return rv;
	nrows = rep.u.table.ncells / rep.u.table.ncolumns;
	if (!c->json)
		printf("%-8s %-20s %-16s %-16s %-6s %-8s %s\n", "ID", "CREATED", "USER", "MODULE",
		       "HOSTS", "STATE", "COUNTS");
	for (r = 0; r < nrows; r++) {
		if (c->json) {
			json_t *o = job_json(&rep, r);
			json_object_set_new(o, "hosts", json_int_or_null(&rep, r, "HOSTS"));
			json_print(o);
			continue;
		}
		printf("%-8s %-20s %-16s %-16s %-6s %-8s %s\n",
		       printable(cell_of(&rep, r, "ID"), id, sizeof(id)),
		       printable(cell_of(&rep, r, "CREATED"), created, sizeof(created)),
		       printable(cell_of(&rep, r, "USER"), user, sizeof(user)),
		       printable(cell_of(&rep, r, "MODULE"), module, sizeof(module)),
		       printable(cell_of(&rep, r, "HOSTS"), hosts, sizeof(hosts)),
		       printable(cell_of(&rep, r, "STATE"), state, sizeof(state)),
		       counts_text(&rep, r, counts, sizeof(counts)));
	}
	om_msg_release(&rep);
	return 0;
}

/*
 * job follow ID: a job from its first event, live until it ends (omctl run
 * without the submit): output, then each host's result, exit code as run.
 * Bounded by --reconnect-timeout when the master goes away, as run is.
 */
static int
job_follow(struct ctl *c, uint64_t id)
{
	struct hosttab tab = {0};
	uint64_t cursor = 0;
	int rv;

	if ((rv = connect_master(c)) != 0)
		return rv;
	rv = follow_events(c, id, &cursor, 0, 0, run_event, &tab);
	if (rv == 0)
		rv = print_summary(c, id, &tab);
	hosttab_free(&tab);
	return rv;
}

static int
cmd_job(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"dest", required_argument, NULL, 'D'},
	        {"state", required_argument, NULL, 'S'},
	        {"host", required_argument, NULL, 'H'},
	        {NULL, 0, NULL, 0},
	};
	const char *sub = argv[0], *dest = NULL, *state = NULL, *host = NULL;
	uint64_t id;
	int ch, only = -1;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'D')
			dest = optarg;
		else if (ch == 'S')
			state = optarg;
		else if (ch == 'H')
			host = optarg;
		else
			return usage(stderr), EXIT_USAGE;
	}
	if ((state != NULL && strcmp(sub, "show") != 0) ||
	    (host != NULL && strcmp(sub, "output") != 0))
		return usage(stderr), EXIT_USAGE;
	if (strcmp(sub, "cancel") == 0) {
		if (optind != argc - 1 || dest != NULL || parse_id(argv[optind], &id) != 0)
			return die("usage: omctl job cancel ID");
		return job_cancel(c, id);
	}
	if (strcmp(sub, "fetch") == 0) {
		if (optind != argc - 1 || dest == NULL || *dest == '\0' ||
		    parse_id(argv[optind], &id) != 0)
			return die("usage: omctl job fetch ID --dest DIR");
		return job_fetch(c, id, dest);
	}
	if (strcmp(sub, "show") == 0) {
		if (optind != argc - 1 || dest != NULL || parse_id(argv[optind], &id) != 0)
			return die("usage: omctl job show ID [--state S]");
		if (state != NULL && (only = om_host_state_parse(state)) < 0)
			return die("--state wants queued, dispatched, running, ok, failed, "
			           "unreachable, timeout, cancelled, skipped or lost");
		return job_show(c, id, only);
	}
	if (strcmp(sub, "follow") == 0) {
		if (optind != argc - 1 || dest != NULL || parse_id(argv[optind], &id) != 0)
			return die("usage: omctl job follow ID");
		return job_follow(c, id);
	}
	if (strcmp(sub, "output") == 0) {
		if (optind != argc - 1 || dest != NULL || parse_id(argv[optind], &id) != 0)
			return die("usage: omctl job output ID [--host H]");
		if (host != NULL && !om_name_valid(host))
			return die("invalid host name '%s'", host);
		return job_output(c, id, host);
	}
	return usage(stderr), EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"master", required_argument, NULL, 'M'},
	        {"master-key", required_argument, NULL, 'K'},
	        {"token", required_argument, NULL, 'T'},
	        {"json", no_argument, NULL, 'j'},
	        {"user", required_argument, NULL, 'U'},
	        {"password-file", required_argument, NULL, 'P'},
	        {"reconnect-timeout", required_argument, NULL, 'R'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static char pwbuf[OM_MAX_SECRET + 2];
	struct ctl c;
	int ch, rv;

	memset(&c, 0, sizeof(c));
	c.master = getenv("OM_MASTER");
	c.master_key = getenv("OM_MASTER_KEY");
	c.token = getenv("OM_TOKEN");
	c.user = getenv("OM_USER");
	c.password = getenv("OM_PASSWORD");
	c.reconnect_s = RECONNECT_S;
	om_log_setup("omctl", OM_LOG_ERROR);
	/* '+': stop at the command word, the rest is the command's. */
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'M':
			c.master = optarg;
			break;
		case 'K':
			c.master_key = optarg;
			break;
		case 'T':
			c.token = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'U':
			c.user = optarg;
			c.token = NULL; /* an explicit user wins over OM_TOKEN */
			break;
		case 'P':
			if (read_password(optarg, pwbuf, sizeof(pwbuf)) != 0)
				return EXIT_USAGE;
			c.password = pwbuf;
			break;
		case 'R':
			if (om_parse_u32(optarg, 0, 86400, &c.reconnect_s) != 0)
				return die("--reconnect-timeout wants seconds (0..86400)");
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc >= 1 && strcmp(argv[0], "run") == 0)
		rv = cmd_run(&c, argc, argv);
	else if (argc >= 2 && strcmp(argv[0], "hosts") == 0 && strcmp(argv[1], "add") == 0)
		rv = cmd_hosts_add(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "hosts") == 0 && strcmp(argv[1], "list") == 0)
		rv = cmd_hosts_list(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "hosts") == 0 && strcmp(argv[1], "import") == 0)
		rv = cmd_hosts_import(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "hosts") == 0 && strcmp(argv[1], "show") == 0)
		rv = cmd_hosts_show(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "job") == 0)
		rv = cmd_job(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "jobs") == 0 && strcmp(argv[1], "list") == 0)
		rv = cmd_jobs_list(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "keys") == 0)
		rv = cmd_keys(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "users") == 0)
		rv = cmd_users(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "tokens") == 0)
		rv = cmd_tokens(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "audit") == 0)
		rv = cmd_audit(&c, argc - 1, argv + 1);
	else if (argc >= 2 && strcmp(argv[0], "workers") == 0 && strcmp(argv[1], "list") == 0)
		rv = cmd_workers_list(&c, argc - 1, argv + 1);
	else if (argc >= 2 && (strcmp(argv[0], "modules") == 0 || strcmp(argv[0], "module") == 0))
		rv = cmd_modules(&c, argc - 1, argv + 1);
	else {
		usage(stderr);
		rv = EXIT_USAGE;
	}
	om_rpc_client_close(c.rpc);
	fflush(stdout);
	return rv;
}
