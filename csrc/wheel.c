/*
 * wheel.c -- hierarchical timing wheel that reclaims expired entries.
 *
 * STRUCTURE
 *   Five levels of 64 buckets, plus an overflow list and a pending list. Each bucket is
 *   a circular doubly-linked list threaded through the entries' wprev/wnext indices,
 *   closed by a sentinel whose id is TC_SENT_BASE + bucket number:
 *
 *     level  bucket span       level span
 *       0    2^24 ns  16.8 ms    1.07 s
 *       1    2^30 ns   1.07 s    1.15 min
 *       2    2^36 ns   1.15 min  1.22 h
 *       3    2^42 ns   1.22 h    3.26 d
 *       4    2^48 ns   3.26 d    208.5 d
 *     overflow: deadlines more than 208.5 days away
 *     pending:  entries whose bucket came due, waiting for the store to expire or
 *               reschedule them
 *
 *   An entry whose deadline is `d`, scheduled when the wheel's time is `now`, goes to
 *   the lowest level i with d - now < span of level i, in bucket (d >> shift_i) & 63
 *   (Varghese & Lauck's scheme 6, as in Caffeine's TimerWheel).
 *
 * INVARIANTS
 *   - Every entry with a deadline is linked in exactly one bucket, the overflow list or
 *     the pending list; an entry without one is not linked (wnext == TC_NIL).
 *   - A bucket is moved to pending no later than the start of the tick that holds its
 *     entries' deadlines, so no entry is reclaimed late by more than one level-0 tick
 *     (plus the time until the next cache operation); entries found early are simply
 *     rescheduled one level down. Reads never rely on the wheel: they check deadlines.
 *
 * COMPLEXITY
 *   schedule, unlink: O(1). advance: O(levels x buckets) splices at worst, each O(1),
 *   whatever the number of entries; it moves lists, it does not visit entries. The store
 *   then drains pending with a budget per operation (store.c), so the work per call is
 *   bounded and each entry is visited O(levels) times over its life: amortised O(1).
 */
#include "wheel.h"

static const int SHIFT[TC_WHEEL_LEVELS] = {24, 30, 36, 42, 48};

#define SENT(b) (TC_SENT_BASE + (uint32_t)(b))

static inline uint32_t *prev_of(tc_wheel *w, tc_entry *slab, uint32_t id) {
    return id >= TC_SENT_BASE ? &w->sent[id - TC_SENT_BASE].prev : &slab[id].wprev;
}
static inline uint32_t *next_of(tc_wheel *w, tc_entry *slab, uint32_t id) {
    return id >= TC_SENT_BASE ? &w->sent[id - TC_SENT_BASE].next : &slab[id].wnext;
}

void tc_wheel_init(tc_wheel *w, int64_t now) {
    w->now = now;
    w->count = 0;
    for (uint32_t b = 0; b < TC_WHEEL_NSENT; b++) {
        w->sent[b].prev = SENT(b);
        w->sent[b].next = SENT(b);
    }
}

static int bucket_for(const tc_wheel *w, int64_t deadline) {
    if (deadline <= w->now) return TC_WHEEL_PENDING;
    int64_t duration = deadline - w->now;
    for (int i = 0; i < TC_WHEEL_LEVELS; i++) {
        if (duration < ((int64_t)1 << (SHIFT[i] + 6)))
            return i * TC_WHEEL_BUCKETS + (int)((deadline >> SHIFT[i]) & (TC_WHEEL_BUCKETS - 1));
    }
    return TC_WHEEL_OVERFLOW;
}

/* Link idx at the tail of list `b`. */
static void link_tail(tc_wheel *w, tc_entry *slab, uint32_t b, uint32_t idx) {
    uint32_t s = SENT(b);
    uint32_t last = w->sent[b].prev;
    slab[idx].wprev = last;
    slab[idx].wnext = s;
    *next_of(w, slab, last) = idx;
    w->sent[b].prev = idx;
}

void tc_wheel_schedule(tc_wheel *w, tc_entry *slab, uint32_t idx) {
    TC_ASSERT(!tc_wheel_linked(&slab[idx]));
    TC_ASSERT(slab[idx].deadline != TC_NO_DEADLINE);
    link_tail(w, slab, (uint32_t)bucket_for(w, slab[idx].deadline), idx);
    w->count++;
}

void tc_wheel_unlink(tc_wheel *w, tc_entry *slab, uint32_t idx) {
    tc_entry *e = &slab[idx];
    if (e->wnext == TC_NIL) return;
    *next_of(w, slab, e->wprev) = e->wnext;
    *prev_of(w, slab, e->wnext) = e->wprev;
    e->wprev = e->wnext = TC_NIL;
    w->count--;
}

/* Move the whole list `b` to the tail of the pending list: O(1). */
static void splice_to_pending(tc_wheel *w, tc_entry *slab, uint32_t b) {
    uint32_t s = SENT(b);
    uint32_t first = w->sent[b].next;
    if (first == s) return;
    uint32_t last = w->sent[b].prev;
    uint32_t p = SENT(TC_WHEEL_PENDING);
    uint32_t ptail = w->sent[TC_WHEEL_PENDING].prev;
    *next_of(w, slab, ptail) = first;
    *prev_of(w, slab, first) = ptail;
    *next_of(w, slab, last) = p;
    w->sent[TC_WHEEL_PENDING].prev = last;
    w->sent[b].prev = w->sent[b].next = s;
}

void tc_wheel_advance(tc_wheel *w, tc_entry *slab, int64_t now) {
    int64_t prev = w->now;
    if (now <= prev) return;
    w->now = now;
    if (w->count == 0) return;
    for (int i = 0; i < TC_WHEEL_LEVELS; i++) {
        int64_t pt = prev >> SHIFT[i], ct = now >> SHIFT[i];
        if (ct == pt) break;
        /* ticks pt..ct inclusive: pt's bucket may hold entries scheduled during that
         * tick after the previous advance; at most one lap of the level */
        int64_t steps = ct - pt + 1;
        if (steps > TC_WHEEL_BUCKETS) steps = TC_WHEEL_BUCKETS;
        for (int64_t s = 0; s < steps; s++)
            splice_to_pending(w, slab, (uint32_t)(i * TC_WHEEL_BUCKETS + ((pt + s) & (TC_WHEEL_BUCKETS - 1))));
        if (i == TC_WHEEL_LEVELS - 1) splice_to_pending(w, slab, TC_WHEEL_OVERFLOW);
    }
}

void tc_wheel_advance_exact(tc_wheel *w, tc_entry *slab, int64_t now) {
    tc_wheel_advance(w, slab, now);
    /* The current level-0 bucket holds the only entries that may have expired within
     * the tick that is still running (see INVARIANTS). */
    splice_to_pending(w, slab, (uint32_t)((w->now >> SHIFT[0]) & (TC_WHEEL_BUCKETS - 1)));
}

uint32_t tc_wheel_pending(const tc_wheel *w) {
    uint32_t first = w->sent[TC_WHEEL_PENDING].next;
    return first >= TC_SENT_BASE ? TC_NIL : first;
}

long tc_wheel_check(const tc_wheel *w, const tc_entry *slab, uint32_t hwm) {
    long total = 0;
    for (uint32_t b = 0; b < TC_WHEEL_NSENT; b++) {
        uint32_t s = SENT(b), prev = s, id = w->sent[b].next;
        long guard = 0;
        while (id != s) {
            if (id >= TC_SENT_BASE || id >= hwm) return -1;
            const tc_entry *e = &slab[id];
            if (e->key == NULL || e->deadline == TC_NO_DEADLINE || e->wprev != prev) return -1;
            prev = id;
            id = e->wnext;
            if (++guard > (long)hwm) return -1;
            total++;
        }
        if (w->sent[b].prev != prev) return -1;
    }
    if (total != (long)w->count) return -1;
    for (uint32_t i = 0; i < hwm; i++) {
        const tc_entry *e = &slab[i];
        if (e->key != NULL && (e->deadline != TC_NO_DEADLINE) != (e->wnext != TC_NIL)) return -1;
    }
    return total;
}
