/*
 * om-master: configuration, signals, and the core loop (master.c).
 *
 * Settings come from a config file of "key = value" lines (--config FILE)
 * and from flags of the same names, flags winning.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master_int.h"

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: om-master [--config FILE] --db CONNINFO --key FILE\n"
	           "                 --worker-listen URL --client-listen URL\n"
	           "                 [--heartbeat-ms N] [--pending-timeout SECONDS]\n"
	           "                 [--retention-days N (90; 0 keeps all)]\n"
	           "                 [--log-level error|warn|info|debug]\n"
	           "                 [--http-listen ADDR:PORT [--web-root DIR] [--http-max-body BYTES]\n"
	           "                  [--tls-cert FILE --tls-key FILE]]\n"
	           "       om-master --key FILE --print-public-key\n"
	           "       om-master --db CONNINFO --init-admin NAME [--password-file FILE]\n");
}


/* Applies one setting; the value must outlive the config (argv or the file buffer). */
static int
set_option(struct master_config *c, const char *key, const char *val)
{
	if (strcmp(key, "db") == 0)
		c->db = val;
	else if (strcmp(key, "worker-listen") == 0 || strcmp(key, "worker_listen") == 0)
		c->worker_listen = val;
	else if (strcmp(key, "client-listen") == 0 || strcmp(key, "client_listen") == 0)
		c->client_listen = val;
	else if (strcmp(key, "key") == 0)
		c->key_path = val;
	else if (strcmp(key, "log-level") == 0 || strcmp(key, "log_level") == 0) {
		if (om_log_level_parse(val, &c->log_level) != 0)
			return fprintf(stderr, "om-master: unknown log level '%s'\n", val), -1;
	} else if (strcmp(key, "heartbeat-ms") == 0 || strcmp(key, "heartbeat_ms") == 0) {
		if (om_parse_u32(val, 100, 600000, &c->heartbeat_ms) != 0)
			return fprintf(stderr, "om-master: heartbeat-ms wants 100..600000\n"), -1;
	} else if (strcmp(key, "pending-timeout") == 0 || strcmp(key, "pending_timeout") == 0) {
		uint32_t s;
		if (om_parse_u32(val, 1, 86400, &s) != 0)
			return fprintf(stderr, "om-master: pending-timeout wants 1..86400 s\n"), -1;
		c->pending_ms = s * 1000;
	} else if (strcmp(key, "retention-days") == 0 || strcmp(key, "retention_days") == 0) {
		if (om_parse_u32(val, 0, 36500, &c->retention_days) != 0)
			return fprintf(stderr, "om-master: retention-days wants 0..36500\n"), -1;
	} else if (strcmp(key, "http-listen") == 0 || strcmp(key, "http_listen") == 0) {
		c->http.listen = val;
	} else if (strcmp(key, "web-root") == 0 || strcmp(key, "web_root") == 0) {
		c->http.web_root = val;
	} else if (strcmp(key, "tls-cert") == 0 || strcmp(key, "tls_cert") == 0) {
		c->http.tls_cert = val;
	} else if (strcmp(key, "tls-key") == 0 || strcmp(key, "tls_key") == 0) {
		c->http.tls_key = val;
	} else if (strcmp(key, "http-max-body") == 0 || strcmp(key, "http_max_body") == 0) {
		uint64_t n;
		if (om_parse_size(val, 1024, 64u << 20, &n) != 0)
			return fprintf(stderr, "om-master: http-max-body wants 1K..64M\n"), -1;
		c->http.max_body = (size_t)n;
	} else {
		fprintf(stderr, "om-master: unknown setting '%s'\n", key);
		return -1;
	}
	return 0;
}

/*
 * nng 1.5.2 can hang in nng_close after a raw-mode REQ peer had pipes
 * closed on it (reproduced with a hostile peer; fixed upstream later).  By
 * the time we close sockets the database is closed and nothing durable is
 * left, so a shutdown that takes longer than this just ends the process.
 */
#define SHUTDOWN_GRACE_S 2

static void *
shutdown_watchdog(void *arg)
{
	(void)arg;
	sleep(SHUTDOWN_GRACE_S);
	om_warn("shutdown did not finish in %d s (nng close), exiting anyway", SHUTDOWN_GRACE_S);
	_exit(0);
	return NULL;
}

/*
 * The console's files when --web-root is not given: web/ of the source tree
 * the binary was built in (build/bin/om-master), else the installed copy.
 */
static const char *
default_web_root(void)
{
	static char dir[4200];
	char exe[4000], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/../../web", exe);
			if (access(dir, R_OK | X_OK) == 0)
				return dir;
			snprintf(dir, sizeof(dir), "%s/../share/omserver/web", exe);
			if (access(dir, R_OK | X_OK) == 0)
				return dir;
		}
	}
	return "/usr/local/share/omserver/web";
}

static char *config_text; /* kept for the life of the process: settings point into it */

static int
load_config(struct master_config *c, const char *path)
{
	uint8_t *data;
	size_t len;
	char *line, *save = NULL;
	int rv, lineno = 0;

	if ((rv = om_read_file(path, 1 << 20, &data, &len)) != 0) {
		fprintf(stderr, "om-master: cannot read config '%s': %s\n", path, om_strerror(rv));
		return -1;
	}
	config_text = (char *)data;
	for (line = strtok_r(config_text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq, *k, *v, *e;
		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '#' || *line == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			fprintf(stderr, "om-master: %s: line %d: expected key = value\n", path,
			        lineno);
			return -1;
		}
		*eq = '\0';
		k = line;
		v = eq + 1;
		for (e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--)
			*e = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		for (e = v + strlen(v) - 1; e >= v && (*e == ' ' || *e == '\t' || *e == '\r'); e--)
			*e = '\0';
		if (set_option(c, k, v) != 0)
			return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"db", required_argument, NULL, 1},
	        {"worker-listen", required_argument, NULL, 1},
	        {"client-listen", required_argument, NULL, 1},
	        {"key", required_argument, NULL, 1},
	        {"init-admin", required_argument, NULL, 'A'},
	        {"password-file", required_argument, NULL, 'P'},
	        {"heartbeat-ms", required_argument, NULL, 1},
	        {"pending-timeout", required_argument, NULL, 1},
	        {"retention-days", required_argument, NULL, 1},
	        {"log-level", required_argument, NULL, 1},
	        {"http-listen", required_argument, NULL, 1},
	        {"web-root", required_argument, NULL, 1},
	        {"tls-cert", required_argument, NULL, 1},
	        {"tls-key", required_argument, NULL, 1},
	        {"http-max-body", required_argument, NULL, 1},
	        {"print-public-key", no_argument, NULL, 'p'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct master_config cfg;
	struct master m;
	struct sigaction sa;
	bool print_key = false;
	const char *init_admin = NULL, *password_file = NULL;
	int ch, idx, i;

	memset(&cfg, 0, sizeof(cfg));
	cfg.heartbeat_ms = 5000;
	cfg.retention_days = 90;
	cfg.worker_ctx = 256;
	cfg.client_ctx = 128;
	cfg.log_level = OM_LOG_INFO;
	/* The config file first, so flags override it. */
	for (i = 1; i < argc - 1; i++)
		if (strcmp(argv[i], "--config") == 0 && load_config(&cfg, argv[i + 1]) != 0)
			return 2;
	while ((ch = getopt_long(argc, argv, "c:h", opts, &idx)) != -1) {
		switch (ch) {
		case 'c':
			break;
		case 1:
			if (set_option(&cfg, opts[idx].name, optarg) != 0)
				return 2;
			break;
		case 'p':
			print_key = true;
			break;
		case 'A':
			init_admin = optarg;
			break;
		case 'P':
			password_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	om_log_setup("om-master", cfg.log_level);
	if (*om_fault_armed())
		om_warn("fault injection armed (OM_TEST_FAULT=%s): for crash tests only",
		        om_fault_armed());
	if (print_key) {
		struct om_keypair kp;
		char hex[2 * OM_NOISE_KEYLEN + 1];
		bool created;
		int rv;
		if (cfg.key_path == NULL) {
			usage(stderr);
			return 2;
		}
		if ((rv = om_key_load_or_create(cfg.key_path, &kp, &created)) != 0) {
			fprintf(stderr, "om-master: cannot load key '%s': %s\n", cfg.key_path,
			        om_strerror(rv));
			return 1;
		}
		om_hex_encode(kp.pub, OM_NOISE_KEYLEN, hex);
		om_wipe(&kp, sizeof(kp));
		printf("%s\n", hex);
		return 0;
	}
	if (init_admin != NULL) {
		struct om_store *st;
		char err[512];
		int rv;
		if (cfg.db == NULL) {
			usage(stderr);
			return 2;
		}
		if ((rv = om_store_open(&st, cfg.db, err, sizeof(err))) != 0) {
			fprintf(stderr, "om-master: cannot open the database: %s\n", err);
			return 1;
		}
		rv = auth_init_admin(st, init_admin, password_file);
		om_store_close(st);
		return rv == 0 ? 0 : 1;
	}
	if (!cfg.db || !cfg.worker_listen || !cfg.client_listen || !cfg.key_path) {
		usage(stderr);
		return 2;
	}
	if (cfg.http.listen != NULL && cfg.http.web_root == NULL)
		cfg.http.web_root = default_web_root();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (master_open(&m, &cfg) != 0) {
		master_close(&m);
		return 1;
	}
	master_run(&m, &stopping);
	om_info("stopping");
	{
		pthread_t wd;
		if (pthread_create(&wd, NULL, shutdown_watchdog, NULL) == 0)
			pthread_detach(wd);
	}
	master_close(&m);
	return 0;
}
