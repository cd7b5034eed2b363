/*
 * Unit tests for heartbeat.c: the watchdog is fed only while every
 * worker loop beats between two ticks.
 */
#include <sys/types.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "acceptd.h"

/* Every loop beat since the last tick: fed. */
static void
test_all_workers_beating_is_fresh(void **state)
{
	unsigned long long	 beats[3] = { 5, 2, 9 };
	unsigned long long	 seen[3] = { 4, 1, 3 };
	size_t			 stale = 99;

	assert_int_equal(heartbeat_fresh(beats, seen, 3, &stale), 1);
	assert_int_equal(stale, 99);
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[1], 2);
	assert_int_equal(seen[2], 9);
}

/* One loop did not beat: not fed, and that loop is named. */
static void
test_one_stuck_worker_is_stale(void **state)
{
	unsigned long long	 beats[3] = { 5, 7, 9 };
	unsigned long long	 seen[3] = { 4, 7, 3 };
	size_t			 stale = 99;

	assert_int_equal(heartbeat_fresh(beats, seen, 3, &stale), 0);
	assert_int_equal(stale, 1);
	/* The others' beats are taken: the next tick needs new ones. */
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[2], 9);
}

/* A loop that stays stuck stays stale; one that beats again is fresh. */
static void
test_stuck_worker_stays_stale_until_it_beats(void **state)
{
	unsigned long long	 beats[2] = { 1, 1 };
	unsigned long long	 seen[2] = { 0, 0 };
	size_t			 stale;

	assert_int_equal(heartbeat_fresh(beats, seen, 2, &stale), 1);
	beats[0]++;
	assert_int_equal(heartbeat_fresh(beats, seen, 2, &stale), 0);
	assert_int_equal(stale, 1);
	beats[0]++;
	assert_int_equal(heartbeat_fresh(beats, seen, 2, &stale), 0);
	assert_int_equal(stale, 1);
	/* Beating for one tick is not enough for both: both must move. */
	beats[1]++;
	assert_int_equal(heartbeat_fresh(beats, seen, 2, &stale), 0);
	assert_int_equal(stale, 0);
	beats[0]++;
	beats[1]++;
	assert_int_equal(heartbeat_fresh(beats, seen, 2, NULL), 1);
}

/* The first stale loop is the one named; no loops at all is fresh. */
static void
test_first_stale_worker_is_named(void **state)
{
	unsigned long long	 beats[4] = { 1, 3, 3, 3 };
	unsigned long long	 seen[4] = { 0, 3, 2, 3 };
	size_t			 stale = 99;

	assert_int_equal(heartbeat_fresh(beats, seen, 4, &stale), 0);
	assert_int_equal(stale, 1);
	assert_int_equal(heartbeat_fresh(NULL, NULL, 0, &stale), 1);
}

int
main(void)
{
	const struct CMUnitTest	 tests[] = {
		cmocka_unit_test(test_all_workers_beating_is_fresh),
		cmocka_unit_test(test_one_stuck_worker_is_stale),
		cmocka_unit_test(test_stuck_worker_stays_stale_until_it_beats),
		cmocka_unit_test(test_first_stale_worker_is_named)
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
