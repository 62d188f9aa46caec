/*
 * Wave arithmetic of rolling jobs (master/jobs.c): how many hosts each wave
 * gets, and when a finished wave stops the rest.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jobs.h"
#include "om/msg.h"

/* Sizes of every wave for n hosts; returns the number of waves. */
static uint32_t
waves(uint32_t n, uint32_t batch, bool pct, uint32_t *sizes, uint32_t cap)
{
	uint32_t size = om_wave_size(n, batch, pct), count = om_wave_count(n, size), k, sum = 0;

	assert_true(count <= cap);
	for (k = 0; k < count; k++) {
		sizes[k] = om_wave_len(n, size, k);
		assert_true(sizes[k] >= 1);
		sum += sizes[k];
	}
	assert_int_equal(om_wave_len(n, size, count), 0); /* nothing past the last */
	assert_int_equal(sum, n);                         /* every host exactly once */
	return count;
}

static void
test_no_batch(void **state)
{
	uint32_t s[4];

	(void)state;
	assert_int_equal(waves(10, 0, false, s, 4), 1);
	assert_int_equal(s[0], 10);
	assert_int_equal(waves(10, 0, true, s, 4), 1); /* 0%: still everything at once */
	assert_int_equal(s[0], 10);
	assert_int_equal(om_wave_size(0, 0, false), 0);
	assert_int_equal(om_wave_size(0, 5, false), 0);
	assert_int_equal(om_wave_count(0, 0), 0);
	assert_int_equal(om_wave_len(0, 0, 0), 0);
}

static void
test_batch_count(void **state)
{
	uint32_t s[16];

	(void)state;
	assert_int_equal(waves(10, 3, false, s, 16), 4);
	assert_int_equal(s[0], 3);
	assert_int_equal(s[1], 3);
	assert_int_equal(s[2], 3);
	assert_int_equal(s[3], 1);
	assert_int_equal(waves(10, 5, false, s, 16), 2);
	assert_int_equal(s[1], 5);
	assert_int_equal(waves(10, 1, false, s, 16), 10);
	/* a batch larger than the job: one wave */
	assert_int_equal(waves(4, 100, false, s, 16), 1);
	assert_int_equal(s[0], 4);
	/* large numbers do not overflow */
	assert_int_equal(om_wave_size(UINT32_MAX, UINT32_MAX, false), UINT32_MAX);
	assert_int_equal(om_wave_count(UINT32_MAX, 1), UINT32_MAX);
	assert_int_equal(om_wave_len(UINT32_MAX, 2, UINT32_MAX / 2), 1);
}

static void
test_batch_percent(void **state)
{
	uint32_t s[128];

	(void)state;
	/* 25% of 10 is 2.5: rounded down */
	assert_int_equal(waves(10, 25, true, s, 128), 5);
	assert_int_equal(s[0], 2);
	/* at least one host per wave */
	assert_int_equal(waves(3, 10, true, s, 128), 3);
	assert_int_equal(s[0], 1);
	assert_int_equal(waves(100, 1, true, s, 128), 100);
	assert_int_equal(waves(8, 50, true, s, 128), 2);
	assert_int_equal(s[0], 4);
	assert_int_equal(s[1], 4);
	assert_int_equal(waves(7, 100, true, s, 128), 1);
	assert_int_equal(s[0], 7);
	assert_int_equal(waves(7, 34, true, s, 128), 4); /* 2, 2, 2, 1 */
	assert_int_equal(s[3], 1);
	/* n * pct does not overflow 32 bits */
	assert_int_equal(om_wave_size(100000000, 50, true), 50000000);
}

static void
test_stop(void **state)
{
	(void)state;
	/* without max_fail nothing stops */
	assert_false(om_wave_stop(4, 4, false, 0));
	/* more than max_fail percent stops; exactly max_fail does not */
	assert_true(om_wave_stop(2, 4, true, 25));  /* 50% > 25% */
	assert_false(om_wave_stop(1, 4, true, 25)); /* 25% is not above 25% */
	assert_true(om_wave_stop(1, 3, true, 33));  /* 33.3% > 33% */
	assert_false(om_wave_stop(1, 3, true, 34));
	/* 0: any failure stops, none does not */
	assert_true(om_wave_stop(1, 100, true, 0));
	assert_false(om_wave_stop(0, 100, true, 0));
	/* 100: nothing stops */
	assert_false(om_wave_stop(5, 5, true, 100));
	assert_false(om_wave_stop(0, 0, true, 0));
	assert_true(om_wave_stop(UINT32_MAX, UINT32_MAX, true, 99)); /* no overflow */
}

static void
test_failed_states(void **state)
{
	int s;

	(void)state;
	for (s = 0; s < OM_HS_COUNT_; s++) {
		bool want = s == OM_HS_FAILED || s == OM_HS_UNREACHABLE || s == OM_HS_TIMEOUT ||
		            s == OM_HS_LOST;
		assert_int_equal(om_wave_failed_state((uint32_t)s), want);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_no_batch),      cmocka_unit_test(test_batch_count),
	        cmocka_unit_test(test_batch_percent), cmocka_unit_test(test_stop),
	        cmocka_unit_test(test_failed_states),
	};

	return cmocka_run_group_tests_name("jobs", tests, NULL, NULL);
}
