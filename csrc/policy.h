/* policy.h -- W-TinyLFU eviction policy (see policy.c). Plain C. */
#ifndef TIEREDCACHE_POLICY_H
#define TIEREDCACHE_POLICY_H

#include "entry.h"
#include "sketch.h"

typedef struct tc_queue {
    uint32_t head, tail; /* head = most recently used; TC_NIL when empty */
    uint32_t len;
} tc_queue;

/* The policy needs an entry's hash (for the sketch); the store supplies it. */
typedef uint64_t (*tc_hash_fn)(const tc_entry *e);

typedef struct tc_policy {
    tc_queue q[4];          /* indexed by TC_Q_WINDOW, TC_Q_PROBATION, TC_Q_PROTECTED */
    uint32_t max_entries;
    uint32_t window_max;    /* adapted by the hill climber */
    uint32_t protected_max; /* 80 % of the main area       */
    uint32_t candidate;     /* last entry moved from the window to probation, or NIL */
    tc_sketch sketch;
    /* hill climber */
    uint64_t sample_hits, sample_misses;
    uint64_t climbs;
    double prev_hit_rate;
    double step;
    uint64_t rng;
} tc_policy;

int tc_policy_init(tc_policy *p, uint32_t max_entries, uint32_t capacity);
/* Size the sketch for `capacity` entries, keeping the cached entries' frequencies. */
int tc_policy_reserve(tc_policy *p, uint32_t capacity, const tc_entry *slab, uint32_t hwm, tc_hash_fn hash_of);
void tc_policy_free(tc_policy *p);
void tc_policy_reset(tc_policy *p); /* forget every entry (the store freed them) */
void tc_policy_on_insert(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash);
/* an access by a write (counts for frequency, not for the climber's hit rate) */
void tc_policy_touch(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash);
void tc_policy_on_hit(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash);
void tc_policy_on_miss(tc_policy *p, tc_entry *slab);
void tc_policy_remove(tc_policy *p, tc_entry *slab, uint32_t idx);
uint32_t tc_policy_victim(tc_policy *p, tc_entry *slab, tc_hash_fn hash_of);
long tc_policy_check(const tc_policy *p, const tc_entry *slab, uint32_t hwm);

#endif
