/* clock.h -- the cache clock (see clock.c). Plain C. */
#ifndef TIEREDCACHE_CLOCK_H
#define TIEREDCACHE_CLOCK_H

#include "common.h"

void tc_clock_init(void);
int64_t tc_now(void);                 /* precise: monotonic ns + test offset */
int64_t tc_now_coarse(void);          /* cheap, never ahead of tc_now()      */
int tc_expired(int64_t deadline);     /* exact: deadline <= tc_now()         */
void tc_clock_advance(int64_t ns);    /* test hook: move every cache's time  */
void tc_clock_reset(void);
int64_t tc_clock_offset(void);

#endif
