/*
 * The small shared kit: allocation, bounded buffers, hex, clocks, logging
 * and the one audited shell-quoting function.
 *
 * Invariants: an om_buf never grows past its max; once an append fails the
 * buffer's err is set and every later append is a no-op, so an encoder can
 * append freely and check b->err once at the end.
 */
#ifndef OM_BASE_H
#define OM_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "om/err.h"

/* Allocation goes through these so a test build can fail the Nth call. */
void *om_malloc(size_t n);
void *om_calloc(size_t n, size_t size);
void *om_realloc(void *p, size_t n);
void om_free(void *p);
/* Caller must free the result with om_free; NULL on allocation failure. */
char *om_strdup(const char *s);
char *om_strndup(const char *s, size_t n);
/* Test hook: the nth allocation from now fails (0 disables). */
void om_alloc_fail_at(unsigned long nth);

struct om_buf {
	uint8_t *data; /* owned; NULL until the first append */
	size_t len;    /* bytes in use */
	size_t cap;    /* bytes allocated */
	size_t max;    /* hard ceiling for len */
	int err;       /* sticky: first failure of an append */
};

void om_buf_init(struct om_buf *b, size_t max);
/* Appends n bytes; OM_EMSGSIZE past max, OM_ENOMEM; sets b->err on failure. */
int om_buf_append(struct om_buf *b, const void *p, size_t n);
int om_buf_putc(struct om_buf *b, uint8_t c);
int om_buf_printf(struct om_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer and clears err, keeps the allocation. */
void om_buf_reset(struct om_buf *b);
/* Frees the contents; the buffer may be reused after om_buf_init. */
void om_buf_release(struct om_buf *b);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void om_hex_encode(const uint8_t *in, size_t n, char *out);
/* Exactly 2n hex digits required; OM_EINVAL otherwise. */
int om_hex_decode(const char *in, uint8_t *out, size_t n);

/* Milliseconds of CLOCK_MONOTONIC, and of the wall clock since the epoch. */
int64_t om_now_ms(void);
int64_t om_wall_ms(void);

/*
 * The one audited shell-quoting function: appends s as one POSIX sh word,
 * single-quoted, with embedded ' written as '\''.  Refuses NUL (OM_EINVAL):
 * no sh can carry it.
 */
int om_shell_quote(struct om_buf *out, const char *s, size_t n);

/* Writes a message into a caller's error buffer (redis char *err); NULL or 0 is allowed. */
void om_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A decimal integer in min..max, the whole string; -1 otherwise. */
int om_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);
/* A byte count, decimal with an optional K, M or G (powers of 1024), in min..max; -1 otherwise. */
int om_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Fault injection for the crash tests: when the environment has
 * OM_TEST_FAULT="point:N[,point:N...]", the Nth pass through om_fault(point)
 * kills the process with SIGKILL, as a crash would at that line.  Without
 * the variable it costs one branch.  Points are named in the code that calls
 * them (e.g. "ingest.commit").
 */
void om_fault(const char *point);
/* The armed points as given ("" when none), for a warning at start. */
const char *om_fault_armed(void);

enum om_log_level { OM_LOG_ERROR, OM_LOG_WARN, OM_LOG_INFO, OM_LOG_DEBUG };
/* "error", "warn", "info", "debug"; -1 when unknown. */
int om_log_level_parse(const char *s, enum om_log_level *out);
/* Process-wide: program name shown in each line and the threshold. */
void om_log_setup(const char *prog, enum om_log_level level);
void om_log(enum om_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define om_err(...)   om_log(OM_LOG_ERROR, __VA_ARGS__)
#define om_warn(...)  om_log(OM_LOG_WARN, __VA_ARGS__)
#define om_info(...)  om_log(OM_LOG_INFO, __VA_ARGS__)
#define om_debug(...) om_log(OM_LOG_DEBUG, __VA_ARGS__)

/* Reads a whole regular file of at most max bytes; caller frees *out. */
int om_read_file(const char *path, size_t max, uint8_t **out, size_t *len);
/* Writes atomically (temp file + rename) with the given mode. */
int om_write_file(const char *path, const void *data, size_t len, unsigned mode);

#endif
