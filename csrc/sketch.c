/*
 * sketch.c -- the TinyLFU frequency sketch.
 *
 * STRUCTURE
 *   A count-min sketch of depth 4 with 4-bit saturating counters, 16 to a 64-bit word.
 *   Words are grouped in blocks of 8 (one 64-byte cache line): a key hashes to one
 *   block, and each of the 4 rows picks one of its 2 words in that block and one of the
 *   16 counters in the word, so an increment or an estimate touches one cache line.
 *
 *     block:  | row0 w0 | row0 w1 | row1 w0 | row1 w1 | row2 ... | row3 w1 |
 *
 *   The table has nextpow2(capacity) words (16 counters per cached entry), the sizing of
 *   Einziger, Friedman & Manes, "TinyLFU" (2017) and of Caffeine's FrequencySketch.
 *   It grows with the cache up to max_entries; the cached keys' estimates are carried
 *   into the larger table (other keys start again from zero).
 *
 * AGING
 *   After sample_size = 10 x max_entries increments every counter is halved, so the
 *   sketch forgets old popularity; the halving is O(table) once per 10 x max_entries
 *   increments, amortised O(1) per increment.
 *
 * INVARIANT
 *   frequency(h) >= min(15, true count of h since the last halving) / 2^halvings:
 *   count-min never under-estimates before aging.
 */
#include "sketch.h"

#define ONE_MASK 0x1111111111111111ULL
#define RESET_MASK 0x7777777777777777ULL

static uint64_t nextpow2(uint64_t x) {
    uint64_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

static inline uint64_t spread(uint64_t x);
static inline uint64_t rehash(uint64_t x);

static uint64_t words_for(uint32_t capacity) { return nextpow2(capacity < 8 ? 8 : capacity); }

int tc_sketch_init(tc_sketch *s, uint32_t capacity, uint32_t max_entries) {
    memset(s, 0, sizeof(*s));
    uint64_t words = words_for(capacity);
    s->table = tc_calloc((size_t)words, sizeof(uint64_t));
    if (s->table == NULL) return -1;
    s->block_mask = (words >> 3) - 1;
    s->sample_size = 10ULL * (max_entries ? max_entries : 1);
    s->capacity = capacity;
    return 0;
}

/* Counter positions of a hash: 4 rows, each a word index and a shift. */
static inline uint64_t *block_of(const tc_sketch *s, uint64_t bh) {
    return s->table + ((bh & s->block_mask) << 3);
}

/* Grow the table to `capacity`, carrying over the estimate of every hash `each` yields
 * (the cached keys): their counters in the new table are raised to their old estimate.
 * Keys no longer cached start again from zero, as they would after aging. O(table + n),
 * once per doubling of the cache. Never shrinks. */
int tc_sketch_resize(tc_sketch *s, uint32_t capacity, uint32_t max_entries, tc_hash_iter each, void *ctx) {
    uint64_t words = words_for(capacity), old_words = (s->block_mask + 1) << 3;
    s->capacity = capacity;
    s->sample_size = 10ULL * (max_entries ? max_entries : 1);
    if (words <= old_words) return 0;
    uint64_t *t = tc_calloc((size_t)words, sizeof(uint64_t));
    if (t == NULL) return -1;
    tc_sketch old = *s;
    s->table = t;
    s->block_mask = (words >> 3) - 1;
    uint64_t hash;
    while (each && each(ctx, &hash)) {
        unsigned est = tc_sketch_frequency(&old, hash);
        uint64_t bh = spread(hash), ch = rehash(bh);
        uint64_t *block = block_of(s, bh);
        for (int i = 0; i < 4; i++) {
            uint64_t h = ch >> (i << 3);
            unsigned shift = (unsigned)((h >> 1) & 15) << 2;
            uint64_t *word = block + (h & 1) + (i << 1);
            if (((*word >> shift) & 0xF) < est) *word = (*word & ~(0xFULL << shift)) | ((uint64_t)est << shift);
        }
    }
    tc_free(old.table);
    return 0;
}

void tc_sketch_free(tc_sketch *s) {
    tc_free(s->table);
    s->table = NULL;
}

size_t tc_sketch_bytes(const tc_sketch *s) {
    return s->table ? (size_t)((s->block_mask + 1) << 3) * sizeof(uint64_t) : 0;
}

/* Python's str/bytes hash is SipHash, already well mixed; spread it anyway so the
 * block and the counters use independent bits (murmur3 fmix64). */
static inline uint64_t spread(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t rehash(uint64_t x) {
    x *= 0x9E3779B97F4A7C15ULL;
    return x ^ (x >> 29);
}

static void halve(tc_sketch *s) {
    uint64_t odd = 0, words = (s->block_mask + 1) << 3;
    for (uint64_t i = 0; i < words; i++) {
        odd += (uint64_t)__builtin_popcountll(s->table[i] & ONE_MASK);
        s->table[i] = (s->table[i] >> 1) & RESET_MASK;
    }
    /* each row lost the odd remainders: subtract them (4 rows) before halving */
    s->additions = (s->additions - (odd >> 2)) >> 1;
}

void tc_sketch_increment(tc_sketch *s, uint64_t hash) {
    uint64_t bh = spread(hash), ch = rehash(bh);
    uint64_t *block = s->table + ((bh & s->block_mask) << 3);
    int added = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t h = ch >> (i << 3);
        unsigned shift = (unsigned)((h >> 1) & 15) << 2;
        uint64_t *word = block + (h & 1) + (i << 1);
        if (((*word >> shift) & 0xF) != 0xF) {
            *word += 1ULL << shift;
            added = 1;
        }
    }
    if (added && ++s->additions >= s->sample_size) halve(s);
}

unsigned tc_sketch_frequency(const tc_sketch *s, uint64_t hash) {
    uint64_t bh = spread(hash), ch = rehash(bh);
    const uint64_t *block = s->table + ((bh & s->block_mask) << 3);
    unsigned f = 15;
    for (int i = 0; i < 4; i++) {
        uint64_t h = ch >> (i << 3);
        unsigned shift = (unsigned)((h >> 1) & 15) << 2;
        unsigned c = (unsigned)((block[(h & 1) + (i << 1)] >> shift) & 0xF);
        if (c < f) f = c;
    }
    return f;
}
