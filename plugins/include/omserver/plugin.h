/*
 * omserver module plugins: the ONLY header a plugin needs.
 *
 * A plugin is a shared object in the worker's plugin directory that exports
 * one function, om_plugin_descriptor(), returning a static descriptor.  The
 * worker checks magic, ABI major (must equal), ABI minor (must not exceed
 * its own), struct_size and flags (no bit it does not know) before it calls
 * anything else, and refuses a second plugin with a name already loaded.
 *
 * Execution model (ABI 1): asynchronous, on the worker's one event-loop
 * thread, in the style of libuv.  For every host of a task the worker calls
 * host_start(); the plugin starts host operations (exec, upload, download)
 * through the host-API table and returns at once.  Each operation that
 * started (returned 0) calls its callback exactly once, later, on the same
 * thread; a failed start (negative return) never calls back.  The plugin
 * ends the host with exactly one finish() call, from host_start or from any
 * callback.  Nothing may block: no sleep, no blocking I/O, no threads that
 * call back into the API.
 *
 * When a host is cancelled or times out, the operation in flight ends with
 * rc OM_PLUGIN_ECANCELED or OM_PLUGIN_ETIMEDOUT; the plugin then calls
 * finish() (whatever state it passes, the worker records cancelled or
 * timeout).
 *
 * Memory: strings and buffers the worker passes are valid only during the
 * call that passes them, except param() values, valid until finish().
 * alloc() gives memory freed by the worker after finish() (nginx pools).
 */
#ifndef OMSERVER_PLUGIN_H
#define OMSERVER_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define OM_PLUGIN_MAGIC     0x4f4d5031u /* "OMP1" */
#define OM_PLUGIN_ABI_MAJOR 1           /* breaking: the worker refuses another major */
#define OM_PLUGIN_ABI_MINOR 1           /* append-only growth; 1: flags */
#define OM_HOST_API_VERSION 1           /* om_host_api.api_version */

#if defined(__GNUC__)
#define OM_PLUGIN_EXPORT __attribute__((visibility("default")))
#define OM_PLUGIN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OM_PLUGIN_EXPORT
#define OM_PLUGIN_PRINTF(a, b)
#endif

/* Error codes plugins see; the same numbers as the worker's OM_E* codes. */
#define OM_PLUGIN_EINVAL    (-1)
#define OM_PLUGIN_ENOMEM    (-2)
#define OM_PLUGIN_ETIMEDOUT (-8)
#define OM_PLUGIN_ENOTFOUND (-11)
#define OM_PLUGIN_EIO       (-12)
#define OM_PLUGIN_EPERM     (-20)
#define OM_PLUGIN_ERANGE    (-21)
#define OM_PLUGIN_ECANCELED (-23)

/* Final host states a plugin passes to finish() (the protocol's numbers). */
#define OM_PLUGIN_OK          3
#define OM_PLUGIN_FAILED      4
#define OM_PLUGIN_UNREACHABLE 5

/* Output streams for emit(). */
#define OM_PLUGIN_STDOUT 1
#define OM_PLUGIN_STDERR 2

/* Parameter flags. */
#define OM_PARAM_FREE_FORM 0x1 /* takes omctl's -a text when it is not key=value pairs */
#define OM_PARAM_SECRET    0x2 /* never logged or shown back */

/*
 * One parameter of a module's schema.  type is one of "string", "int",
 * "bool", "mode" (octal file mode), "path" (absolute remote path), "choice"
 * (one of choices) or "file" (a local file: the client sends its bytes,
 * read them with param_bytes()).  Values always arrive as text, already
 * validated against the type by the master and again by the worker.
 */
struct om_plugin_param {
	const char *name;
	const char *type;
	int required;
	const char *default_value;  /* NULL: none */
	const char *description;
	const char *const *choices; /* "choice": NULL-terminated list */
	unsigned flags;             /* OM_PARAM_* */
};

struct om_host_ctx; /* one host of one task: opaque */

/* What an exec produced.  Captured output is bounded by the cap given to exec. */
struct om_exec_result {
	int exit_status;    /* -1 when the command had none (killed by a signal) */
	const char *signal; /* NULL, or the signal name without "SIG" */
	const uint8_t *out; /* captured stdout (OM_EXEC_CAPTURE), else NULL */
	size_t out_len;
	const uint8_t *err; /* captured stderr (OM_EXEC_CAPTURE), else NULL */
	size_t err_len;
	int truncated; /* capture hit its cap; the rest was dropped */
};

/* exec flags */
#define OM_EXEC_STREAM    0x1 /* output goes to the job's output as it arrives */
#define OM_EXEC_CAPTURE   0x2 /* output is kept for the callback (up to cap bytes per stream) */
#define OM_EXEC_NO_BECOME 0x4 /* run as the login user even when the task asks for become */

typedef void (*om_exec_cb)(struct om_host_ctx *h, void *arg, int rc,
                           const struct om_exec_result *res);
/* upload: data NULL; download: the file's bytes (valid during the call). */
typedef void (*om_xfer_cb)(struct om_host_ctx *h, void *arg, int rc, const uint8_t *data,
                           size_t len);

/*
 * The table the worker passes to init() (and keeps valid until fini()).  A
 * plugin built against a newer header checks api_version before using a
 * function added later (redis RMAPI_FUNC_SUPPORTED).
 */
struct om_host_api {
	uint32_t api_version;
	uint32_t struct_size;

	/* The task's value for name, its default, or NULL.  Valid until finish(). */
	const char *(*param)(struct om_host_ctx *h, const char *name);
	/* A "file" parameter's bytes (base64 on the wire): 0, or OM_PLUGIN_ENOTFOUND. */
	int (*param_bytes)(struct om_host_ctx *h, const char *name, const uint8_t **data,
	                   size_t *len);
	/* Non-zero in check mode: report what would change, change nothing. */
	int (*check_mode)(struct om_host_ctx *h);
	/* The inventory name of the host. */
	const char *(*host_name)(struct om_host_ctx *h);

	/*
	 * Runs a command on the host: either cmd (a shell string) or argv (each
	 * element quoted by the worker), not both.  stdin_data (may be NULL) is
	 * written to the command's stdin, then stdin is closed.  cap bounds the
	 * captured bytes per stream (0: 1 MiB).  The callback gets rc 0 and the
	 * result once the command exited, or rc < 0 when it could not run.
	 */
	int (*exec)(struct om_host_ctx *h, const char *cmd, const char *const *argv,
	            const void *stdin_data, size_t stdin_len, unsigned flags, size_t cap,
	            om_exec_cb cb, void *arg);
	/* Writes data to remote_path over SFTP with mode (e.g. 0644). */
	int (*upload)(struct om_host_ctx *h, const char *remote_path, const void *data,
	              size_t len, unsigned mode, om_xfer_cb cb, void *arg);
	/* Reads remote_path over SFTP; rc OM_PLUGIN_ERANGE when it is larger than max. */
	int (*download)(struct om_host_ctx *h, const char *remote_path, size_t max,
	                om_xfer_cb cb, void *arg);

	/* Adds bytes to the job's output of this host. */
	void (*emit)(struct om_host_ctx *h, int stream, const void *data, size_t len);
	/* Stores a file's bytes in the master's artifact store under name. */
	int (*save_file)(struct om_host_ctx *h, const char *name, const void *data, size_t len);
	/* The structured result: a JSON object as text (copied), and whether the host changed. */
	int (*set_result)(struct om_host_ctx *h, const char *json, int changed);
	/* A line in the worker's log (level 0 error .. 3 debug), tagged with module and host. */
	void (*log)(struct om_host_ctx *h, int level, const char *fmt, ...) OM_PLUGIN_PRINTF(3, 4);
	/* Ends the host: exactly once.  exit_code -1 when there is none; reason NULL for ok. */
	void (*finish)(struct om_host_ctx *h, int state, int exit_code, const char *reason);

	/* Memory freed by the worker after finish(); NULL when out of memory. */
	void *(*alloc)(struct om_host_ctx *h, size_t n);
	/*
	 * The one audited shell quoting function: writes s as one sh word into
	 * out (NUL-terminated).  Returns the length, or OM_PLUGIN_ERANGE when cap
	 * is too small.
	 */
	long (*quote)(const char *s, char *out, size_t cap);

	void *spare[8];
};

struct om_plugin {
	uint32_t magic;
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t struct_size; /* sizeof(struct om_plugin) at build time */
	const char *name;
	const char *version;
	const char *description;
	const struct om_plugin_param *params;
	size_t nparams;

	/* Optional: once at load, before any host.  Non-zero refuses the plugin. */
	int (*init)(const struct om_host_api *api, void **state);
	/*
	 * Starts the module on one host (required).  Returns 0 and later calls
	 * finish() exactly once; or returns a negative code after calling
	 * finish() itself.
	 */
	int (*host_start)(void *state, struct om_host_ctx *h);
	/* Optional: once at unload. */
	void (*fini)(void *state);

	/*
	 * OM_PLUGIN_* promises (ABI 1.1; the slot was spare[0] in 1.0, where it
	 * had to be NULL, so a 1.0 plugin reads as 0).  A bit the worker does
	 * not know refuses the plugin: a promise it cannot honour is not
	 * silently dropped.
	 */
	unsigned long flags;
	void *spare[7]; /* must be NULL */
};

/*
 * The module is idempotent: running it twice on a host, or running it
 * again after a run that was interrupted at any point (the worker died,
 * the connection dropped), leaves the host as one complete run would.
 * Read-only modules qualify; so does one that converges on a declared
 * state.  Anything that appends, counts, restarts or runs arbitrary
 * commands does not.  With it, the hosts of a worker that dies mid-task
 * are run again on another worker of their IDC (as if the job had asked
 * for --retry-lost) instead of ending lost.
 */
#define OM_PLUGIN_IDEMPOTENT 0x1ul

#define OM_PLUGIN_DECLARE(desc)                                                                    \
	OM_PLUGIN_EXPORT const struct om_plugin *om_plugin_descriptor(void);                       \
	const struct om_plugin *om_plugin_descriptor(void)                                         \
	{                                                                                          \
		return &(desc);                                                                    \
	}

#endif
