/*
 * entry.h -- one cache entry, as stored in the store's slab.
 *
 * An entry is 48 bytes and is addressed by its uint32 index in the slab; every link
 * between entries is an index, never a pointer, so the slab may be moved by realloc.
 *
 *   key, value      owned references to PyObjects (void* here: this header is plain C);
 *                   key == NULL marks a free slot
 *   deadline        expiry time in cache-clock nanoseconds, TC_NO_DEADLINE if none
 *   charge          bytes charged against max_bytes (< 4 GiB)
 *   wprev, wnext    links in a timing-wheel bucket (TC_NIL when not scheduled)
 *   pprev, pnext    links in a policy queue (also the free-list link of free slots)
 *   queue           which policy queue holds it (TC_Q_*)
 *   flags           TC_F_* bits
 *   spare           unused (padding)
 */
#ifndef TIEREDCACHE_ENTRY_H
#define TIEREDCACHE_ENTRY_H

#include "common.h"

enum { TC_Q_NONE = 0, TC_Q_WINDOW = 1, TC_Q_PROBATION = 2, TC_Q_PROTECTED = 3 };

enum { TC_F_TAGS = 1 }; /* the entry has a tag set in store->tagsets */

typedef struct tc_entry {
    void *key;
    void *value;
    int64_t deadline;
    uint32_t charge;
    uint32_t wprev, wnext;
    uint32_t pprev, pnext;
    uint8_t queue;
    uint8_t flags;
    uint16_t spare;
} tc_entry;

#endif /* TIEREDCACHE_ENTRY_H */
