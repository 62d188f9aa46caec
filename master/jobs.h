/*
 * Wave arithmetic of rolling jobs (master/jobs.c): pure functions, so the
 * rules that decide how many hosts run at once and when a job stops are
 * tested without a master.
 */
#ifndef OM_MASTER_JOBS_H
#define OM_MASTER_JOBS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Hosts per wave for n hosts: all of them when batch is 0, else batch hosts,
 * or batch percent of n rounded down when pct; at least 1, at most n.
 * 0 only when n is 0.
 */
uint32_t om_wave_size(uint32_t n, uint32_t batch, bool pct);
/* Waves needed for n hosts in waves of size (the last may be smaller). */
uint32_t om_wave_count(uint32_t n, uint32_t size);
/* Hosts in wave k (0-based) of n hosts in waves of size; 0 past the last. */
uint32_t om_wave_len(uint32_t n, uint32_t size, uint32_t k);
/*
 * Whether a finished wave stops the waves after it: only with max_fail,
 * when its failed hosts are more than max_fail percent of its total
 * (max_fail 0: any failure stops).
 */
bool om_wave_stop(uint32_t failed, uint32_t total, bool has_max_fail, uint32_t max_fail);
/* States that count as failed for max_fail: failed, unreachable, timeout, lost. */
bool om_wave_failed_state(uint32_t state);

#endif
