/*
 * clock.c -- the cache clock.
 *
 * Time is CLOCK_MONOTONIC in nanoseconds plus a process-wide offset that tests move
 * forward with tieredcache.testing.advance_clock() instead of sleeping.
 *
 * Reading CLOCK_MONOTONIC costs about 20 ns here (vDSO), as much as the rest of a
 * cache hit. tc_expired() therefore first reads CLOCK_MONOTONIC_COARSE (about 3 ns),
 * which is the same clock sampled at the last scheduler tick and so is never ahead of
 * the precise clock and lags it by about one tick (1-10 ms). A deadline more than
 * TC_COARSE_MARGIN ahead of the coarse time is certainly in the future; only deadlines
 * closer than that pay for the precise read. The answer is exact either way: an entry
 * is expired iff deadline <= precise now.
 *
 * Without CLOCK_MONOTONIC_COARSE (non-Linux) every check reads the precise clock.
 */
#define _GNU_SOURCE
#include <time.h>
#include <stdatomic.h>

#include "clock.h"

/* Far beyond any tick lag the coarse clock can have on a running CPU. */
#define TC_COARSE_MARGIN (1000LL * 1000 * 1000) /* 1 s */

static _Atomic int64_t clock_offset;

void tc_clock_init(void) {}

static inline int64_t ts_ns(const struct timespec *ts) {
    return (int64_t)ts->tv_sec * TC_NS_PER_SEC + ts->tv_nsec;
}

int64_t tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts_ns(&ts) + atomic_load_explicit(&clock_offset, memory_order_relaxed);
}

int64_t tc_now_coarse(void) {
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts_ns(&ts) + atomic_load_explicit(&clock_offset, memory_order_relaxed);
#else
    return tc_now();
#endif
}

int tc_expired(int64_t deadline) {
#ifdef CLOCK_MONOTONIC_COARSE
    int64_t coarse = tc_now_coarse();
    if (deadline <= coarse) return 1;
    if (deadline - coarse > TC_COARSE_MARGIN) return 0;
#endif
    return deadline <= tc_now();
}

void tc_clock_advance(int64_t ns) {
    atomic_fetch_add_explicit(&clock_offset, ns, memory_order_relaxed);
}

void tc_clock_reset(void) {
    atomic_store_explicit(&clock_offset, 0, memory_order_relaxed);
}

int64_t tc_clock_offset(void) {
    return atomic_load_explicit(&clock_offset, memory_order_relaxed);
}
