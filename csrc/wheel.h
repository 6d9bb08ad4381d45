/* wheel.h -- hierarchical timing wheel over slab entries (see wheel.c). Plain C. */
#ifndef TIEREDCACHE_WHEEL_H
#define TIEREDCACHE_WHEEL_H

#include "entry.h"

#define TC_WHEEL_LEVELS 5
#define TC_WHEEL_BUCKETS 64
#define TC_WHEEL_OVERFLOW (TC_WHEEL_LEVELS * TC_WHEEL_BUCKETS) /* 320 */
#define TC_WHEEL_PENDING (TC_WHEEL_OVERFLOW + 1)               /* 321 */
#define TC_WHEEL_NSENT (TC_WHEEL_PENDING + 1)                  /* 322 */

/* Link ids at or above TC_SENT_BASE name a sentinel, not an entry. */
#define TC_SENT_BASE ((uint32_t)0xFFFF0000u)

typedef struct tc_link {
    uint32_t prev, next;
} tc_link;

typedef struct tc_wheel {
    int64_t now;    /* time up to which due buckets were moved to the pending list */
    uint32_t count; /* entries linked anywhere in the wheel, pending included     */
    tc_link sent[TC_WHEEL_NSENT];
} tc_wheel;

void tc_wheel_init(tc_wheel *w, int64_t now);
void tc_wheel_schedule(tc_wheel *w, tc_entry *slab, uint32_t idx);
void tc_wheel_unlink(tc_wheel *w, tc_entry *slab, uint32_t idx);
void tc_wheel_advance(tc_wheel *w, tc_entry *slab, int64_t now);
void tc_wheel_advance_exact(tc_wheel *w, tc_entry *slab, int64_t now);
uint32_t tc_wheel_pending(const tc_wheel *w); /* first pending entry, or TC_NIL */

static inline int tc_wheel_linked(const tc_entry *e) { return e->wnext != TC_NIL; }


/* Structural check for tests: every list is a consistent ring, every linked entry
 * has a deadline; returns the number of linked entries or -1 on inconsistency. */
long tc_wheel_check(const tc_wheel *w, const tc_entry *slab, uint32_t hwm);

#endif
