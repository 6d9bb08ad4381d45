/* sketch.h -- 4-bit count-min sketch of access frequencies (see sketch.c). Plain C. */
#ifndef TIEREDCACHE_SKETCH_H
#define TIEREDCACHE_SKETCH_H

#include "common.h"

typedef struct tc_sketch {
    uint64_t *table;      /* words of 16 four-bit counters, in blocks of 8 words */
    uint64_t block_mask;  /* number of blocks - 1 (a power of two minus one)     */
    uint64_t additions;   /* increments since the last halving                   */
    uint64_t sample_size; /* halve every counter when additions reaches this     */
    uint32_t capacity;    /* the entry count the table is sized for              */
} tc_sketch;

int tc_sketch_init(tc_sketch *s, uint32_t capacity, uint32_t max_entries);
/* Yields the hashes whose estimates survive a resize; returns 0 when done. */
typedef int (*tc_hash_iter)(void *ctx, uint64_t *hash);
int tc_sketch_resize(tc_sketch *s, uint32_t capacity, uint32_t max_entries, tc_hash_iter each, void *ctx);
void tc_sketch_free(tc_sketch *s);
void tc_sketch_increment(tc_sketch *s, uint64_t hash);
unsigned tc_sketch_frequency(const tc_sketch *s, uint64_t hash);
size_t tc_sketch_bytes(const tc_sketch *s);

#endif
