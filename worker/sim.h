/*
 * The sim connector: hosts simulated inside the worker, for benchmarks and
 * tests only (om-worker --sim LATENCY_MS[:OUTPUT_BYTES]).
 *
 * Under it the engine opens no SSH session: every host "connects" at once,
 * and each exec completes LATENCY_MS after it started, with OUTPUT_BYTES of
 * deterministic output on stdout (om_sim_fill) and exit code 0.  An upload
 * completes after the same latency; a download fails (there is no file).
 * Everything after the connector (output limits, the worker's outbox,
 * spool, reports, the master, PostgreSQL) is the real path.
 *
 * The latency is a timer on the engine's loop (om_sim_queue), never a
 * thread or a sleep.  The queue is owned by the loop thread; it holds
 * links embedded in the caller's objects and allocates nothing.
 */
#ifndef OM_WORKER_SIM_H
#define OM_WORKER_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OM_SIM_MAX_LATENCY_MS 600000u
#define OM_SIM_MAX_OUTPUT     ((size_t)64 << 20)

struct om_sim {
	bool on;
	unsigned latency_ms; /* from an op's start to its completion */
	size_t output_bytes; /* stdout of every exec */
};

/*
 * "LATENCY_MS[:OUTPUT_BYTES]" (OUTPUT_BYTES may end in K or M) into *out,
 * with out->on set: 0, or OM_EINVAL (out untouched).
 */
int om_sim_parse(const char *spec, struct om_sim *out);

/*
 * Bytes [off, off + n) of the simulated output of host: the line
 * "<host> sim output\n" repeated (its last copy cut at the output's end).
 * The same host always gives the same bytes.
 */
void om_sim_fill(const char *host, size_t off, uint8_t *buf, size_t n);

/* A pending completion: embed it in the simulated operation. */
struct om_sim_timer {
	int64_t due; /* om_now_ms() at which it fires */
	struct om_sim_timer *next, *prev;
	bool queued;
};

/* Ordered by due time; insertion from the tail (one latency: always there). */
struct om_sim_queue {
	struct om_sim_timer *head, *tail;
};

void om_sim_queue_add(struct om_sim_queue *q, struct om_sim_timer *t, int64_t due);
/* Safe on a timer that is not queued. */
void om_sim_queue_del(struct om_sim_queue *q, struct om_sim_timer *t);
/* The earliest timer due at now, unlinked; NULL when none is. */
struct om_sim_timer *om_sim_queue_pop(struct om_sim_queue *q, int64_t now);
/* ms from now until the earliest timer fires (0 when due); -1 when the queue is empty. */
int64_t om_sim_queue_wait(const struct om_sim_queue *q, int64_t now);

#endif
