/*
 * policy.c -- W-TinyLFU eviction (Einziger, Friedman & Manes 2017; as in Caffeine).
 *
 * STRUCTURE
 *   Three LRU queues threaded through the entries' pprev/pnext indices:
 *
 *     new entry --> [ window LRU ] --tail--> [ probation ] <--demote-- [ protected ]
 *                                   (candidate)    |  hit ------promote----^
 *                                                  v tail = victim
 *
 *   - window: 1 % of max_entries at start, resized by a hill climber;
 *   - main = probation + protected, with protected at most 80 % of main.
 *   When the store is over a bound it asks for a victim: the last entry that left the
 *   window (the candidate) -- or the window's LRU entry when none left it -- duels with
 *   probation's LRU entry, and the one the frequency sketch says is used less often is
 *   evicted. A one-off scan therefore passes through
 *   the window and is rejected at the door instead of flushing the main area.
 *   Frequencies above 5 are admitted against a stronger victim with probability
 *   1/128, so an attacker cannot pin the victim by flooding colliding keys (Caffeine).
 *
 * HILL CLIMBER
 *   Every 10 x max_entries requests the hit rate of the sample is compared with the
 *   previous one; the window grows or shrinks by a step of 6.25 % of the capacity in
 *   the direction that improved it, the step decaying by 0.98 while the rate is
 *   stable and restarting when it changes by 5 points (Caffeine's simple climber).
 *
 * INVARIANTS
 *   - an entry is in exactly one queue, named by its `queue` field, or in none
 *     (TC_Q_NONE) only while the store is inserting or removing it;
 *   - q[i].len counts the entries of queue i; window_max >= 1 when max_entries >= 2.
 *
 * COMPLEXITY
 *   insert, hit, remove, victim: O(1) (the climber's adjustment demotes at most one
 *   step's worth of entries once per sample: amortised O(1)).
 */
#include <math.h>

#include "policy.h"

#define RESTART_THRESHOLD 0.05
#define STEP_PERCENT 0.0625
#define STEP_DECAY 0.98
#define ADMIT_HASHDOS_THRESHOLD 6

static void q_unlink(tc_policy *p, tc_entry *slab, uint32_t idx) {
    tc_entry *e = &slab[idx];
    tc_queue *q = &p->q[e->queue];
    if (e->pprev != TC_NIL) slab[e->pprev].pnext = e->pnext; else q->head = e->pnext;
    if (e->pnext != TC_NIL) slab[e->pnext].pprev = e->pprev; else q->tail = e->pprev;
    e->pprev = e->pnext = TC_NIL;
    e->queue = TC_Q_NONE;
    q->len--;
}

static void q_push_head(tc_policy *p, tc_entry *slab, uint8_t which, uint32_t idx) {
    tc_entry *e = &slab[idx];
    tc_queue *q = &p->q[which];
    e->queue = which;
    e->pprev = TC_NIL;
    e->pnext = q->head;
    if (q->head != TC_NIL) slab[q->head].pprev = idx; else q->tail = idx;
    q->head = idx;
    q->len++;
}

static void q_move_head(tc_policy *p, tc_entry *slab, uint8_t which, uint32_t idx) {
    if (slab[idx].queue == which && p->q[which].head == idx) return;
    q_unlink(p, slab, idx);
    q_push_head(p, slab, which, idx);
}

static void set_window(tc_policy *p, double window) {
    uint32_t max = p->max_entries;
    if (max < 2) {
        p->window_max = max;
        p->protected_max = 0;
        return;
    }
    if (window < 1) window = 1;
    if (window > max - 1) window = max - 1;
    p->window_max = (uint32_t)window;
    p->protected_max = (uint32_t)((double)(max - p->window_max) * 0.8);
}

int tc_policy_init(tc_policy *p, uint32_t max_entries, uint32_t capacity) {
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < 4; i++) p->q[i].head = p->q[i].tail = TC_NIL;
    p->max_entries = max_entries;
    p->candidate = TC_NIL;
    set_window(p, ceil(max_entries * 0.01));
    p->step = -STEP_PERCENT * max_entries;
    p->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)p;
    return tc_sketch_init(&p->sketch, capacity, max_entries);
}

typedef struct {
    const tc_entry *slab;
    uint32_t hwm, next;
    tc_hash_fn hash_of;
} live_iter;

static int next_live(void *ctx, uint64_t *hash) {
    live_iter *it = ctx;
    while (it->next < it->hwm) {
        const tc_entry *e = &it->slab[it->next++];
        if (e->key) {
            *hash = it->hash_of(e);
            return 1;
        }
    }
    return 0;
}

int tc_policy_reserve(tc_policy *p, uint32_t capacity, const tc_entry *slab, uint32_t hwm, tc_hash_fn hash_of) {
    live_iter it = {slab, hwm, 0, hash_of};
    return tc_sketch_resize(&p->sketch, capacity, p->max_entries, next_live, &it);
}

void tc_policy_free(tc_policy *p) { tc_sketch_free(&p->sketch); }

void tc_policy_reset(tc_policy *p) {
    for (int i = 0; i < 4; i++) {
        p->q[i].head = p->q[i].tail = TC_NIL;
        p->q[i].len = 0;
    }
    p->candidate = TC_NIL;
}

static void demote_protected(tc_policy *p, tc_entry *slab) {
    while (p->q[TC_Q_PROTECTED].len > p->protected_max) {
        uint32_t t = p->q[TC_Q_PROTECTED].tail;
        q_unlink(p, slab, t);
        q_push_head(p, slab, TC_Q_PROBATION, t);
    }
}

static void climb(tc_policy *p, tc_entry *slab) {
    uint64_t n = p->sample_hits + p->sample_misses;
    /* samples of 1 x max_entries at first, growing to Caffeine's 10 x: the window
     * finds its region quickly, then settles on steadier measurements */
    uint64_t factor = 1 + p->climbs / 2;
    if (factor > 10) factor = 10;
    uint64_t sample = factor * (p->max_entries > 1000 ? p->max_entries : 1000);
    if (n < sample) return;
    p->climbs++;
    double rate = (double)p->sample_hits / (double)n;
    double change = rate - p->prev_hit_rate;
    double amount = change >= 0 ? p->step : -p->step;
    double next;
    if (fabs(change) >= RESTART_THRESHOLD)
        next = STEP_PERCENT * p->max_entries * (amount >= 0 ? 1 : -1);
    else
        next = STEP_DECAY * amount;
    p->prev_hit_rate = rate;
    p->step = next;
    p->sample_hits = p->sample_misses = 0;
    set_window(p, (double)p->window_max + amount);
    demote_protected(p, slab);
}

/* Entries beyond the window's share leave it for probation's MRU end. */
static void drain_window(tc_policy *p, tc_entry *slab) {
    while (p->q[TC_Q_WINDOW].len > p->window_max) {
        uint32_t t = p->q[TC_Q_WINDOW].tail;
        q_unlink(p, slab, t);
        q_push_head(p, slab, TC_Q_PROBATION, t);
        p->candidate = t;
    }
}

void tc_policy_on_insert(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash) {
    tc_sketch_increment(&p->sketch, hash);
    q_push_head(p, slab, TC_Q_WINDOW, idx);
    drain_window(p, slab);
}

void tc_policy_touch(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash) {
    tc_sketch_increment(&p->sketch, hash);
    switch (slab[idx].queue) {
    case TC_Q_WINDOW:
        q_move_head(p, slab, TC_Q_WINDOW, idx);
        break;
    case TC_Q_PROBATION:
        if (p->candidate == idx) p->candidate = TC_NIL;
        q_unlink(p, slab, idx);
        q_push_head(p, slab, TC_Q_PROTECTED, idx);
        demote_protected(p, slab);
        break;
    case TC_Q_PROTECTED:
        q_move_head(p, slab, TC_Q_PROTECTED, idx);
        break;
    default:
        break;
    }
}

void tc_policy_on_hit(tc_policy *p, tc_entry *slab, uint32_t idx, uint64_t hash) {
    tc_policy_touch(p, slab, idx, hash);
    p->sample_hits++;
    climb(p, slab);
}

void tc_policy_on_miss(tc_policy *p, tc_entry *slab) {
    p->sample_misses++;
    climb(p, slab);
}

void tc_policy_remove(tc_policy *p, tc_entry *slab, uint32_t idx) {
    if (p->candidate == idx) p->candidate = TC_NIL;
    if (slab[idx].queue != TC_Q_NONE) q_unlink(p, slab, idx);
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int admit(tc_policy *p, unsigned cand_freq, unsigned victim_freq) {
    if (cand_freq > victim_freq) return 1;
    if (cand_freq >= ADMIT_HASHDOS_THRESHOLD) return (xorshift(&p->rng) & 127) == 0;
    return 0;
}

uint32_t tc_policy_victim(tc_policy *p, tc_entry *slab, tc_hash_fn hash_of) {
    drain_window(p, slab);
    uint32_t victim = p->q[TC_Q_PROBATION].tail;
    if (victim == TC_NIL) victim = p->q[TC_Q_PROTECTED].tail;
    if (victim == TC_NIL) return p->q[TC_Q_WINDOW].tail;
    /* the challenger: the entry that just left the window or, when none did (the window
     * is below its share), the window's LRU entry; it stays where it is if it wins */
    uint32_t cand = p->candidate != TC_NIL ? p->candidate : p->q[TC_Q_WINDOW].tail;
    p->candidate = TC_NIL;
    if (cand == TC_NIL || cand == victim) return victim;
    unsigned cf = tc_sketch_frequency(&p->sketch, hash_of(&slab[cand]));
    unsigned vf = tc_sketch_frequency(&p->sketch, hash_of(&slab[victim]));
    return admit(p, cf, vf) ? victim : cand;
}

long tc_policy_check(const tc_policy *p, const tc_entry *slab, uint32_t hwm) {
    long total = 0;
    for (uint8_t which = TC_Q_WINDOW; which <= TC_Q_PROTECTED; which++) {
        const tc_queue *q = &p->q[which];
        uint32_t prev = TC_NIL, id = q->head, n = 0;
        while (id != TC_NIL) {
            if (id >= hwm) return -1;
            const tc_entry *e = &slab[id];
            if (e->key == NULL || e->queue != which || e->pprev != prev) return -1;
            prev = id;
            id = e->pnext;
            if (++n > hwm) return -1;
        }
        if (q->tail != prev || q->len != n) return -1;
        total += n;
    }
    if (p->candidate != TC_NIL &&
        (p->candidate >= hwm || slab[p->candidate].queue != TC_Q_PROBATION))
        return -1;
    return total;
}
