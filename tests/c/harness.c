/*
 * harness.c -- the plain-C structures of the core (wheel, sketch, tags, policy) driven
 * by random operations against simple reference models, checking their structural
 * invariants after every step. Built with -fsanitize=address,undefined by
 * tests/test_c_structures.py; exits non-zero with a message on the first violation.
 *
 * usage: harness SEED STEPS
 */
#include <stdio.h>
#include <stdlib.h>

#include "policy.h"
#include "sketch.h"
#include "tags.h"
#include "wheel.h"

void *tc_malloc(size_t n) { return malloc(n); }
void *tc_calloc(size_t c, size_t n) { return calloc(c, n); }
void *tc_realloc(void *p, size_t n) { return realloc(p, n); }
void tc_free(void *p) { free(p); }

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static uint64_t below(uint64_t n) { return rnd() % n; }

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

/* ---- wheel --------------------------------------------------------------------- */

#define WN 512
static char live_tok;

static void test_wheel(long steps) {
    tc_entry slab[WN];
    memset(slab, 0, sizeof(slab));
    int64_t now = (int64_t)below(1LL << 40);
    tc_wheel w;
    tc_wheel_init(&w, now);
    for (int i = 0; i < WN; i++) {
        slab[i].key = &live_tok;
        slab[i].deadline = TC_NO_DEADLINE;
        slab[i].wprev = slab[i].wnext = TC_NIL;
    }
    static const int64_t spans[] = {1LL << 20, 1LL << 26, 1LL << 31, 1LL << 37, 1LL << 43, 1LL << 49, 1LL << 56};
    for (long step = 0; step < steps; step++) {
        uint32_t i = (uint32_t)below(WN);
        switch (below(6)) {
        case 0: case 1: /* (re)schedule */
            tc_wheel_unlink(&w, slab, i);
            slab[i].deadline = w.now + 1 + (int64_t)below((uint64_t)spans[below(7)]);
            tc_wheel_schedule(&w, slab, i);
            break;
        case 2: /* unschedule */
            tc_wheel_unlink(&w, slab, i);
            slab[i].deadline = TC_NO_DEADLINE;
            break;
        default: { /* time passes; drain like the store does */
            int64_t dt = (int64_t)below((uint64_t)spans[below(6)]); /* <= 2^43: no overflow */
            int exact = (int)below(2);
            if (exact) tc_wheel_advance_exact(&w, slab, w.now + dt); else tc_wheel_advance(&w, slab, w.now + dt);
            uint32_t idx;
            while ((idx = tc_wheel_pending(&w)) != TC_NIL) {
                tc_wheel_unlink(&w, slab, idx);
                if (slab[idx].deadline <= w.now) slab[idx].deadline = TC_NO_DEADLINE; /* expired */
                else tc_wheel_schedule(&w, slab, idx);
            }
            if (exact) { /* exactness: nothing due may remain scheduled */
                for (int k = 0; k < WN; k++)
                    if (slab[k].deadline != TC_NO_DEADLINE && slab[k].deadline <= w.now)
                        FAIL("wheel: entry %d due at %lld still scheduled at %lld", k, (long long)slab[k].deadline,
                             (long long)w.now);
            }
            break;
        }
        }
        if (tc_wheel_check(&w, slab, WN) < 0) FAIL("wheel: structure inconsistent at step %ld", step);
    }
}

/* ---- sketch -------------------------------------------------------------------- */

static int next_hash(void *ctx, uint64_t *hash) {
    struct { uint64_t *h; int i, n; } *it = ctx;
    if (it->i >= it->n) return 0;
    *hash = it->h[it->i++];
    return 1;
}

static void test_sketch(long steps) {
    tc_sketch s;
    uint32_t cap = 64 + (uint32_t)below(4096);
    if (tc_sketch_init(&s, cap, cap) < 0) FAIL("sketch: init");
    s.sample_size = UINT64_MAX; /* no aging: count-min must never under-estimate */
    enum { KEYS = 300 };
    unsigned truth[KEYS] = {0};
    uint64_t hashes[KEYS];
    for (int k = 0; k < KEYS; k++) hashes[k] = rnd();
    for (long step = 0; step < steps; step++) {
        int k = (int)below(KEYS);
        tc_sketch_increment(&s, hashes[k]);
        if (truth[k] < 15) truth[k]++;
        unsigned f = tc_sketch_frequency(&s, hashes[k]);
        if (f < truth[k] || f > 15) FAIL("sketch: frequency %u below true count %u", f, truth[k]);
    }
    /* aging halves */
    s.sample_size = s.additions + 1;
    unsigned before = tc_sketch_frequency(&s, hashes[0]);
    uint64_t a0 = s.additions;
    for (int guard = 0; s.additions >= a0; guard++) { /* saturated counters do not count */
        if (guard > 1000000) FAIL("sketch: no increment ever counted");
        tc_sketch_increment(&s, rnd());
    }
    unsigned after = tc_sketch_frequency(&s, hashes[0]);
    if (after > before / 2 + 1) FAIL("sketch: halving left %u from %u", after, before);
    /* growing carries the estimates of the hashes it is given */
    unsigned before_resize[KEYS];
    for (int k = 0; k < KEYS; k++) before_resize[k] = tc_sketch_frequency(&s, hashes[k]);
    struct { uint64_t *h; int i, n; } it = {hashes, 0, KEYS};
    if (tc_sketch_resize(&s, cap * 4, cap * 4, next_hash, &it) < 0) FAIL("sketch: resize");
    for (int k = 0; k < KEYS; k++)
        if (tc_sketch_frequency(&s, hashes[k]) < before_resize[k]) FAIL("sketch: resize lost an estimate");
    tc_sketch_free(&s);
}

/* ---- tags ---------------------------------------------------------------------- */

#define TE 64
#define TT 24

static void test_tags(long steps) {
    tc_tagindex ix;
    tc_tags_init(&ix);
    tc_tagset *sets[TE] = {0};
    unsigned char model[TE][TT];
    memset(model, 0, sizeof(model));
    char names[TT][16];
    tc_tagref refs[TT];
    for (int t = 0; t < TT; t++) {
        snprintf(names[t], sizeof(names[t]), "tag:%d", t);
        /* a deliberately poor hash: collisions exercise probing and the back shift */
        refs[t] = (tc_tagref){(uint64_t)(t % 5), names[t], (uint32_t)strlen(names[t])};
    }
    for (long step = 0; step < steps; step++) {
        int e = (int)below(TE);
        if (sets[e]) {
            tc_tags_detach(&ix, sets[e]);
            sets[e] = NULL;
            memset(model[e], 0, TT);
        }
        if (below(3)) {
            tc_tagref chosen[TT];
            uint32_t n = 0;
            for (int t = 0; t < TT; t++)
                if (below(5) == 0) { chosen[n++] = refs[t]; model[e][t] = 1; }
            if (n) {
                sets[e] = tc_tags_attach(&ix, (uint32_t)e, chosen, n);
                if (!sets[e]) FAIL("tags: attach failed");
            }
        }
        long total = tc_tags_check(&ix);
        if (total < 0) FAIL("tags: index inconsistent at step %ld", step);
        long expect = 0;
        for (int t = 0; t < TT; t++) {
            uint32_t carriers = 0;
            for (int k = 0; k < TE; k++) carriers += model[k][t];
            expect += carriers;
            tc_tag *tag = tc_tags_find(&ix, &refs[t]);
            if ((tag ? tag->count : 0) != carriers) FAIL("tags: tag %d has %u carriers, model %u", t, tag ? tag->count : 0, carriers);
            for (const tc_tagnode *node = tag ? tag->head : NULL; node; node = node->next)
                if (!model[node->entry][t]) FAIL("tags: entry %u listed under tag %d it does not carry", node->entry, t);
        }
        if (total != expect) FAIL("tags: %ld memberships, model %ld", total, expect);
    }
    for (int e = 0; e < TE; e++) if (sets[e]) tc_tags_detach(&ix, sets[e]);
    if (ix.count != 0) FAIL("tags: %u tags outlive their entries", ix.count);
    tc_tags_free(&ix);
}

/* ---- policy -------------------------------------------------------------------- */

#define PN 200
static uint64_t policy_hash(const tc_entry *e) { return (uint64_t)(uintptr_t)e->value; }

static void test_policy(long steps) {
    tc_entry slab[PN + 1];
    memset(slab, 0, sizeof(slab));
    uint32_t max = 1 + (uint32_t)below(PN);
    tc_policy p;
    if (tc_policy_init(&p, max, max) < 0) FAIL("policy: init");
    uint32_t count = 0;
    for (long step = 0; step < steps; step++) {
        uint32_t i = (uint32_t)below(PN + 1);
        tc_entry *e = &slab[i];
        if (e->key == NULL) { /* insert, then evict like the store */
            e->key = &live_tok;
            e->value = (void *)(uintptr_t)(below(50) + 1);
            e->queue = TC_Q_NONE;
            tc_policy_on_insert(&p, slab, i, policy_hash(e));
            count++;
            while (count > max) {
                uint32_t v = tc_policy_victim(&p, slab, policy_hash);
                if (v == TC_NIL || slab[v].key == NULL) FAIL("policy: no victim with %u > %u entries", count, max);
                tc_policy_remove(&p, slab, v);
                slab[v].key = NULL;
                count--;
            }
        } else if (below(4) == 0) {
            tc_policy_remove(&p, slab, i);
            e->key = NULL;
            count--;
        } else if (below(2)) {
            tc_policy_on_hit(&p, slab, i, policy_hash(e));
        } else {
            tc_policy_on_miss(&p, slab);
        }
        long n = tc_policy_check(&p, slab, PN + 1);
        if (n != (long)count) FAIL("policy: queues hold %ld entries, expected %u (step %ld)", n, count, step);
        if (max >= 2 && (p.window_max < 1 || p.window_max > max - 1)) FAIL("policy: window %u out of range", p.window_max);
    }
    tc_policy_free(&p);
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    long steps = argc > 2 ? strtol(argv[2], NULL, 10) : 20000;
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    test_wheel(steps);
    test_sketch(steps);
    test_tags(steps / 4);
    test_policy(steps);
    printf("ok seed=%llu steps=%ld\n", (unsigned long long)seed, steps);
    return 0;
}
