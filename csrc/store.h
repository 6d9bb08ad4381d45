/* store.h -- the hash store: entries, index, bounds, and the structures it drives. */
#ifndef TIEREDCACHE_STORE_H
#define TIEREDCACHE_STORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "entry.h"
#include "policy.h"
#include "tags.h"
#include "wheel.h"

/* ---- trash: references to drop once the store is consistent again ---------------- */

#define TC_TRASH_INLINE 32

typedef struct tc_trash {
    PyObject **items;
    size_t len, cap;
    PyObject *inline_items[TC_TRASH_INLINE];
} tc_trash;

static inline void tc_trash_init(tc_trash *t) {
    t->items = t->inline_items;
    t->len = 0;
    t->cap = TC_TRASH_INLINE;
}
/* Room for `more` further items; raw allocator, no GIL needed. 0 or -1. */
int tc_trash_reserve(tc_trash *t, size_t more);
/* Drop every collected reference and free the buffer. Needs the GIL; may run
 * arbitrary Python code (__del__), so the store must be consistent and unlocked. */
void tc_trash_flush(tc_trash *t);

/* ---- store ---------------------------------------------------------------------- */

typedef enum {
    TC_RM_DELETE,
    TC_RM_EVICT,
    TC_RM_EVICT_BYTES,
    TC_RM_EXPIRE,
    TC_RM_INVALIDATE,
    TC_RM_REJECT,
    TC_RM_CLEAR,
} tc_reason;

typedef struct tc_counters {
    uint64_t hits, misses, sets, deletes, evictions, evictions_bytes, expirations,
        invalidations, rejected;
} tc_counters;

typedef struct tc_store {
    tc_entry *slab;        /* cap entries; [0, hwm) have been used          */
    uint32_t cap, hwm;
    uint32_t free_head;    /* free slots below hwm, linked through pnext    */
    uint32_t count;        /* live entries                                  */
    uint32_t *slots;       /* index: 0 = empty, else slab index + 1         */
    uint32_t nslots;
    uint32_t max_slots;    /* nslots stops growing here (load <= 0.7 at max) */
    int tagged;            /* slots carry a hash tag and displacement (store.c) */
    tc_tagset **tagsets;   /* parallel to slab; NULL until the first tag    */
    tc_tagindex tags;
    tc_wheel wheel;
    tc_policy policy;
    uint32_t max_entries;
    uint64_t max_bytes;    /* 0: no byte bound */
    uint64_t bytes, peak_bytes;
    tc_counters c;
} tc_store;

/* Largest charge of one entry; larger values are rejected. */
#define TC_MAX_CHARGE ((uint64_t)0xFFFFFFFFu)

int tc_store_init(tc_store *s, uint32_t max_entries, uint64_t max_bytes, int64_t now);
/* Empty the store and hand its old slab to the caller, who must drop the references
 * of the entries whose key is not NULL (below *hwm) and free it with tc_free. The store
 * is consistent (empty) on return, so dropping them may re-enter it. No GIL needed. */
tc_entry *tc_store_detach(tc_store *s, uint32_t *hwm, uint32_t *count, int64_t now);
/* Free the store's C memory; it must be empty (detach first). */
void tc_store_destroy(tc_store *s);

/* Find a key (exact str or bytes with its hash): slab index or TC_NIL. */
uint32_t tc_store_find(const tc_store *s, PyObject *key, Py_hash_t hash);
/* Remove an entry; t must have room for 2 more items. No GIL needed. */
void tc_store_remove(tc_store *s, uint32_t idx, tc_reason why, tc_trash *t);
/* Insert or replace. Takes new references to key and value. Returns 1 stored, 0 not
 * stored (charge above the limit; a previous value is removed), -1 out of memory (the
 * store is unchanged). Needs the GIL (increfs). t must have room for 2 more items. */
int tc_store_put(tc_store *s, PyObject *key, Py_hash_t hash, PyObject *value,
                 int64_t deadline, uint64_t charge, const tc_tagref *tags, uint32_t ntags,
                 tc_trash *t);
/* Change an entry's deadline. */
void tc_store_set_deadline(tc_store *s, uint32_t idx, int64_t deadline);
/* Record a hit (policy and counters). */
void tc_store_hit(tc_store *s, uint32_t idx, Py_hash_t hash);
void tc_store_miss(tc_store *s);
/* Advance the wheel to `now` and expire or reschedule at most `budget` pending entries
 * (TC_NIL budget: all). With exact, also entries due within the current tick. Stops
 * early if t cannot grow. Returns the number expired. No GIL needed. */
uint32_t tc_store_maintain(tc_store *s, int64_t now, uint32_t budget, int exact, tc_trash *t);
/* Remove every entry carrying a tag; t must have room for 2 x tag->count. */
uint32_t tc_store_invalidate_tag(tc_store *s, tc_tag *tag, tc_trash *t);
/* Remove every key of prefix's type starting with it; t must have room for 2 x count. */
uint32_t tc_store_invalidate_prefix(tc_store *s, PyObject *prefix, tc_trash *t);
/* C memory used by the store's own structures, in bytes. */
size_t tc_store_overhead(const tc_store *s);
/* Structural self-check; NULL if consistent, else a static description. */
const char *tc_store_check(const tc_store *s);

static inline Py_hash_t tc_key_hash(PyObject *key) {
    /* Keys are exact str or bytes whose hash was computed when they were stored, so
     * this is a read of a cached field: no Python code runs and no GIL is needed. */
    if (PyUnicode_CheckExact(key)) return ((PyASCIIObject *)key)->hash;
    return Py_TYPE(key)->tp_hash(key);
}

#endif
