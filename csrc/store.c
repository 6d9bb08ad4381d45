/*
 * store.c -- the hash store.
 *
 * STRUCTURE
 *
 *   slots (index)            slab (48-byte entries)              sidecars
 *   +---+                    +-----------------------------+
 *   | 0 |  empty             | 0: key value deadline charge|     tagsets[0] -> tags.c
 *   | 3 |--(slab index+1)--->| 1:  w-links  p-links  queue |     wheel (wheel.c)
 *   | 0 |                    | 2:  ...                     |     policy queues and
 *   | 1 |                    | 3:  ...                     |       sketch (policy.c)
 *   +---+                    +-----------------------------+
 *
 *   The index is open addressing with linear probing over nslots uint32 slots (any
 *   size: the home slot is fastrange(hash)), deletion by backward shift, so there are
 *   no tombstones. While slab indices fit in 24 bits (max_entries < 16.7 M), a slot's
 *   top byte holds 4 bits of the key's hash and its distance from its home slot (15:
 *   "15 or more, ask the key"), so a probe compares only slots with the same home and
 *   tag, and a deletion shifts the cluster back without touching any other entry. The slab grows by doubling up to max_entries and the index up to
 *   max_slots = max_entries / 0.7, so a full cache holds no more than it needs.
 *   An entry costs 48 bytes + 4 per index slot + 8 per sketch word: about 61 bytes at
 *   max_entries = 10^6, plus 8 bytes and its tag nodes once any entry carries a tag.
 *
 * KEYS
 *   Keys are exact str or bytes (the Python type normalises subclasses), compared by
 *   type and content; their hashes are cached in the objects. Comparing or hashing a
 *   key runs no Python code, which is what lets the store be modified safely with the
 *   GIL held throughout an ordinary operation, or without the GIL in bulk operations.
 *
 * OWNERSHIP
 *   The store owns one reference to each key and value. Removing an entry never drops
 *   a reference: the pointers go to a tc_trash that the caller flushes once the store
 *   is consistent again (a __del__ may call back into the cache).
 *
 * INVARIANTS (checked by tc_store_check)
 *   - count = live slab entries = non-empty index slots = entries in policy queues;
 *   - every live entry is found by its key; every free slot below hwm is on the free
 *     list; bytes = sum of charges; bytes <= max_bytes and count <= max_entries after
 *     every put that did not run out of memory;
 *   - wheel, policy and tag index invariants (their files).
 *
 * COMPLEXITY
 *   find, put, remove: O(1) expected (put also evicts: O(1) per eviction); growth
 *   O(n) amortised by doubling; tag invalidation O(entries removed); prefix
 *   invalidation O(hwm) (a scan: keys are not ordered); maintenance bounded by budget.
 */
#include "store.h"

/* ---- allocation (raw: thread-safe without the GIL) -------------------------------- */

void *tc_malloc(size_t n) { return PyMem_RawMalloc(n); }
void *tc_calloc(size_t count, size_t size) { return PyMem_RawCalloc(count, size); }
void *tc_realloc(void *p, size_t n) { return PyMem_RawRealloc(p, n); }
void tc_free(void *p) { PyMem_RawFree(p); }

/* ---- trash ---------------------------------------------------------------------- */

int tc_trash_reserve(tc_trash *t, size_t more) {
    if (t->len + more <= t->cap) return 0;
    size_t cap = t->cap * 2;
    if (cap < t->len + more) cap = t->len + more;
    PyObject **items;
    if (t->items == t->inline_items) {
        items = tc_malloc(cap * sizeof(PyObject *));
        if (items) memcpy(items, t->inline_items, t->len * sizeof(PyObject *));
    } else {
        items = tc_realloc(t->items, cap * sizeof(PyObject *));
    }
    if (items == NULL) return -1;
    t->items = items;
    t->cap = cap;
    return 0;
}

void tc_trash_flush(tc_trash *t) {
    /* Each DECREF may run a __del__ that re-enters the cache, which may add nothing to
     * this trash (it is local to the finished operation). */
    for (size_t i = 0; i < t->len; i++) Py_DECREF(t->items[i]);
    if (t->items != t->inline_items) tc_free(t->items);
    tc_trash_init(t);
}

static inline void trash_push(tc_trash *t, PyObject *o) {
    TC_ASSERT(t->len < t->cap);
    t->items[t->len++] = o;
}

/* ---- keys ------------------------------------------------------------------------ */

static inline int key_eq(PyObject *a, PyObject *b, Py_hash_t hb) {
    if (a == b) return 1;
    if (Py_TYPE(a) != Py_TYPE(b)) return 0;
    if (PyUnicode_CheckExact(a)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(a);
        int kind = PyUnicode_KIND(a);
        return ((PyASCIIObject *)a)->hash == hb && n == PyUnicode_GET_LENGTH(b) &&
               kind == (int)PyUnicode_KIND(b) &&
               memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(a);
    return n == PyBytes_GET_SIZE(b) && memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)n) == 0;
}

static int has_prefix(PyObject *key, PyObject *prefix) {
    if (Py_TYPE(key) != Py_TYPE(prefix)) return 0;
    if (PyBytes_CheckExact(key)) {
        Py_ssize_t n = PyBytes_GET_SIZE(prefix);
        return n <= PyBytes_GET_SIZE(key) && memcmp(PyBytes_AS_STRING(key), PyBytes_AS_STRING(prefix), (size_t)n) == 0;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(prefix);
    if (n > PyUnicode_GET_LENGTH(key)) return 0;
    int kk = PyUnicode_KIND(key), pk = PyUnicode_KIND(prefix);
    const void *kd = PyUnicode_DATA(key), *pd = PyUnicode_DATA(prefix);
    if (kk == pk) return memcmp(kd, pd, (size_t)n * (size_t)kk) == 0;
    if (pk > kk) return 0; /* prefix holds a character wider than any in key */
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyUnicode_READ(kk, kd, i) != PyUnicode_READ(pk, pd, i)) return 0;
    return 1;
}

static uint64_t entry_hash(const tc_entry *e) { return (uint64_t)tc_key_hash((PyObject *)e->key); }

/* ---- index ----------------------------------------------------------------------- */

static uint32_t empty_slots[1] = {0};

/* 32 bits of a key's (SipHash) hash. */
static inline uint32_t mix32(Py_hash_t h) {
    uint64_t x = (uint64_t)h;
    return (uint32_t)(x ^ (x >> 32));
}

/* fastrange: the high bits of x choose the home slot in [0, n) */
static inline uint32_t home_of(uint32_t n, uint32_t x) {
    return (uint32_t)(((uint64_t)x * n) >> 32);
}

/* Tagged slots: | tag:4 | disp:4 | slab index + 1 : 24 |
 * tag = low 4 bits of x (home uses the high bits); disp = distance from the home slot,
 * DISP_FAR meaning "15 or more: recompute from the key". */
#define DISP_FAR 15u
#define S_IDX(v) ((v) & 0x00FFFFFFu)
#define S_DISP(v) (((v) >> 24) & 0xFu)
#define S_TAG(v) ((v) >> 28)

static inline uint32_t make_slot(uint32_t x, uint32_t disp, uint32_t idx1) {
    return ((x & 0xFu) << 28) | ((disp < DISP_FAR ? disp : DISP_FAR) << 24) | idx1;
}

static inline uint32_t dist(uint32_t from, uint32_t to, uint32_t n) {
    return to >= from ? to - from : to + n - from;
}

uint32_t tc_store_find(const tc_store *s, PyObject *key, Py_hash_t hash) {
    uint32_t x = mix32(hash), n = s->nslots, i = home_of(n, x), v;
    if (s->tagged) {
        uint32_t tag = x & 0xFu;
        for (uint32_t p = 0; (v = s->slots[i]) != 0; p++) {
            uint32_t d = S_DISP(v);
            /* only a slot with the same home (distance p from it) and tag can match */
            if (S_TAG(v) == tag && (d == p || (d == DISP_FAR && p >= DISP_FAR))) {
                uint32_t id = S_IDX(v) - 1;
                PyObject *k = (PyObject *)s->slab[id].key;
                if (k == key || key_eq(k, key, hash)) return id;
            }
            if (++i == n) i = 0;
        }
        return TC_NIL;
    }
    while ((v = s->slots[i]) != 0) {
        PyObject *k = (PyObject *)s->slab[v - 1].key;
        if (k == key || key_eq(k, key, hash)) return v - 1;
        if (++i == n) i = 0;
    }
    return TC_NIL;
}

static void index_place(tc_store *s, uint32_t *slots, uint32_t x, uint32_t idx) {
    uint32_t n = s->nslots, i = home_of(n, x), p = 0;
    while (slots[i] != 0) {
        if (++i == n) i = 0;
        p++;
    }
    slots[i] = s->tagged ? make_slot(x, p, idx + 1) : idx + 1;
}

/* Home slot of the entry in slot j holding v. */
static inline uint32_t member_home(const tc_store *s, uint32_t j, uint32_t v) {
    if (s->tagged) {
        uint32_t d = S_DISP(v);
        if (d < DISP_FAR) return j >= d ? j - d : j + s->nslots - d;
        v = S_IDX(v);
    }
    return home_of(s->nslots, mix32(tc_key_hash((PyObject *)s->slab[v - 1].key)));
}

static void index_remove(tc_store *s, uint32_t idx) {
    uint32_t n = s->nslots, mask = s->tagged ? 0x00FFFFFFu : 0xFFFFFFFFu;
    uint32_t i = home_of(n, mix32(tc_key_hash((PyObject *)s->slab[idx].key)));
    while ((s->slots[i] & mask) != idx + 1)
        if (++i == n) i = 0;
    /* backward shift: pull later members of the cluster into the hole unless their
     * home lies cyclically in (hole, j]; a moved member's displacement shrinks */
    uint32_t j = i;
    for (;;) {
        if (++j == n) j = 0;
        uint32_t v = s->slots[j];
        if (v == 0) break;
        uint32_t k = member_home(s, j, v);
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        if (s->tagged) {
            uint32_t x_tag = S_TAG(v);
            v = (x_tag << 28) | ((dist(k, i, n) < DISP_FAR ? dist(k, i, n) : DISP_FAR) << 24) | S_IDX(v);
        }
        s->slots[i] = v;
        i = j;
    }
    s->slots[i] = 0;
}

static int index_grow(tc_store *s) {
    uint64_t want = s->nslots < 16 ? 16 : (uint64_t)s->nslots * 2;
    if (want > s->max_slots) want = s->max_slots;
    uint32_t *slots = tc_calloc((size_t)want, sizeof(uint32_t));
    if (slots == NULL) return -1;
    if (s->slots != empty_slots) tc_free(s->slots);
    s->slots = slots;
    s->nslots = (uint32_t)want;
    for (uint32_t i = 0; i < s->hwm; i++) {
        tc_entry *e = &s->slab[i];
        if (e->key) index_place(s, slots, mix32(tc_key_hash((PyObject *)e->key)), i);
    }
    return 0;
}

/* ---- slab ------------------------------------------------------------------------ */

static int slab_grow(tc_store *s) {
    /* max_entries + 1: a put inserts before it evicts */
    uint64_t want = s->cap < 8 ? 8 : (uint64_t)s->cap * 2;
    if (want > (uint64_t)s->max_entries + 1) want = (uint64_t)s->max_entries + 1;
    uint32_t cap = (uint32_t)want;
    tc_entry *slab = tc_realloc(s->slab, (size_t)cap * sizeof(tc_entry));
    if (slab == NULL) return -1;
    s->slab = slab;
    if (s->tagsets) {
        tc_tagset **ts = tc_realloc(s->tagsets, (size_t)cap * sizeof(tc_tagset *));
        if (ts == NULL) {
            /* keep the larger slab; cap stays until tagsets can follow */
            return -1;
        }
        s->tagsets = ts;
    }
    s->cap = cap;
    /* a larger sketch is an optimisation: on failure keep the old one */
    (void)tc_policy_reserve(&s->policy, cap < s->max_entries ? cap : s->max_entries, s->slab, s->hwm, entry_hash);
    return 0;
}

/* A free slot, growing the slab and the index as needed; TC_NIL when out of memory. */
static uint32_t slot_alloc(tc_store *s) {
    if ((uint64_t)(s->count + 1) * 4 > (uint64_t)s->nslots * 3 && s->nslots < s->max_slots) {
        if (index_grow(s) < 0) return TC_NIL;
    }
    if (s->free_head != TC_NIL) {
        uint32_t idx = s->free_head;
        s->free_head = s->slab[idx].pnext;
        return idx;
    }
    if (s->hwm == s->cap && slab_grow(s) < 0) return TC_NIL;
    if (s->hwm == s->cap) return TC_NIL;
    s->slab[s->hwm].key = NULL;
    return s->hwm++;
}

static void slot_free(tc_store *s, uint32_t idx) {
    tc_entry *e = &s->slab[idx];
    e->key = e->value = NULL;
    e->flags = 0;
    e->queue = TC_Q_NONE;
    e->wprev = e->wnext = TC_NIL;
    e->pprev = TC_NIL;
    e->pnext = s->free_head;
    s->free_head = idx;
}

/* ---- lifecycle ------------------------------------------------------------------- */

static void reset_empty(tc_store *s, int64_t now) {
    s->slab = NULL;
    s->cap = s->hwm = s->count = 0;
    s->free_head = TC_NIL;
    s->slots = empty_slots;
    s->nslots = 1;
    s->tagsets = NULL;
    tc_tags_init(&s->tags);
    tc_wheel_init(&s->wheel, now);
    tc_policy_reset(&s->policy);
    s->bytes = 0;
}

int tc_store_init(tc_store *s, uint32_t max_entries, uint64_t max_bytes, int64_t now) {
    memset(s, 0, sizeof(*s));
    s->max_entries = max_entries;
    s->max_bytes = max_bytes;
    uint64_t ms = ((uint64_t)max_entries + 1) * 10 / 7 + 2;
    s->max_slots = ms > 0xFFFFFFF0u ? 0xFFFFFFF0u : (uint32_t)ms;
    /* slab indices + 1 fit in 24 bits: the top byte of each slot carries a hash tag
     * and the distance from the home slot */
    s->tagged = (uint64_t)max_entries + 2 <= 0x00FFFFFFu;
    if (tc_policy_init(&s->policy, max_entries, max_entries < 8 ? max_entries : 8) < 0) return -1;
    reset_empty(s, now);
    return 0;
}

static void free_structures(tc_store *s) {
    if (s->tagsets) {
        for (uint32_t i = 0; i < s->hwm; i++)
            if (s->slab[i].key && (s->slab[i].flags & TC_F_TAGS)) tc_free(s->tagsets[i]);
        tc_free(s->tagsets);
    }
    tc_tags_free(&s->tags);
    if (s->slots != empty_slots) tc_free(s->slots);
}

tc_entry *tc_store_detach(tc_store *s, uint32_t *hwm, uint32_t *count, int64_t now) {
    tc_entry *slab = s->slab;
    *hwm = s->hwm;
    *count = s->count;
    free_structures(s);
    reset_empty(s, now);
    return slab;
}

void tc_store_destroy(tc_store *s) {
    TC_ASSERT(s->count == 0);
    free_structures(s);
    tc_free(s->slab);
    tc_policy_free(&s->policy);
    s->slab = NULL;
    s->slots = empty_slots;
    s->nslots = 1;
}

/* ---- entries --------------------------------------------------------------------- */

static void count_removal(tc_store *s, tc_reason why) {
    switch (why) {
    case TC_RM_DELETE: s->c.deletes++; break;
    case TC_RM_EVICT: s->c.evictions++; break;
    case TC_RM_EVICT_BYTES: s->c.evictions++; s->c.evictions_bytes++; break;
    case TC_RM_EXPIRE: s->c.expirations++; break;
    case TC_RM_INVALIDATE: s->c.invalidations++; break;
    case TC_RM_REJECT: case TC_RM_CLEAR: break;
    }
}

void tc_store_remove(tc_store *s, uint32_t idx, tc_reason why, tc_trash *t) {
    tc_entry *e = &s->slab[idx];
    TC_ASSERT(e->key != NULL);
    index_remove(s, idx);
    tc_wheel_unlink(&s->wheel, s->slab, idx);
    tc_policy_remove(&s->policy, s->slab, idx);
    if (e->flags & TC_F_TAGS) tc_tags_detach(&s->tags, s->tagsets[idx]);
    s->bytes -= e->charge;
    s->count--;
    count_removal(s, why);
    trash_push(t, (PyObject *)e->key);
    trash_push(t, (PyObject *)e->value);
    slot_free(s, idx);
}

void tc_store_set_deadline(tc_store *s, uint32_t idx, int64_t deadline) {
    tc_entry *e = &s->slab[idx];
    tc_wheel_unlink(&s->wheel, s->slab, idx);
    e->deadline = deadline;
    if (deadline != TC_NO_DEADLINE) tc_wheel_schedule(&s->wheel, s->slab, idx);
}

void tc_store_hit(tc_store *s, uint32_t idx, Py_hash_t hash) {
    s->c.hits++;
    tc_policy_on_hit(&s->policy, s->slab, idx, (uint64_t)hash);
}

void tc_store_miss(tc_store *s) {
    s->c.misses++;
    tc_policy_on_miss(&s->policy, s->slab);
}

static int ensure_tagsets(tc_store *s) {
    if (s->tagsets) return 0;
    s->tagsets = tc_malloc((size_t)(s->cap ? s->cap : 1) * sizeof(tc_tagset *));
    return s->tagsets ? 0 : -1;
}

/* Evict until within bounds. Stops early only if the trash cannot grow. */
static void enforce_bounds(tc_store *s, tc_trash *t) {
    while (s->count > s->max_entries || (s->max_bytes && s->bytes > s->max_bytes)) {
        uint32_t v = tc_policy_victim(&s->policy, s->slab, entry_hash);
        if (v == TC_NIL || tc_trash_reserve(t, 2) < 0) return;
        tc_store_remove(s, v, s->count > s->max_entries ? TC_RM_EVICT : TC_RM_EVICT_BYTES, t);
    }
}

int tc_store_put(tc_store *s, PyObject *key, Py_hash_t hash, PyObject *value,
                 int64_t deadline, uint64_t charge, const tc_tagref *tags, uint32_t ntags,
                 tc_trash *t) {
    if (tc_trash_reserve(t, 2) < 0) return -1;
    uint32_t idx = tc_store_find(s, key, hash);
    uint64_t limit = s->max_bytes && s->max_bytes < TC_MAX_CHARGE ? s->max_bytes : TC_MAX_CHARGE;
    if (charge > limit) {
        /* not stored; the previous value must not be served in its place */
        if (idx != TC_NIL) tc_store_remove(s, idx, TC_RM_REJECT, t);
        s->c.rejected++;
        return 0;
    }
    tc_tagset *set = NULL;
    int fresh = idx == TC_NIL;
    if (fresh) {
        idx = slot_alloc(s);
        if (idx == TC_NIL) return -1;
    }
    if (ntags) {
        if (ensure_tagsets(s) < 0 || (set = tc_tags_attach(&s->tags, idx, tags, ntags)) == NULL) {
            if (fresh) slot_free(s, idx);
            return -1;
        }
    }
    tc_entry *e = &s->slab[idx];
    Py_INCREF(value);
    if (fresh) {
        Py_INCREF(key);
        e->key = key;
        e->value = value;
        e->deadline = TC_NO_DEADLINE;
        e->charge = 0;
        e->wprev = e->wnext = TC_NIL;
        e->pprev = e->pnext = TC_NIL;
        e->queue = TC_Q_NONE;
        e->flags = 0;
        index_place(s, s->slots, mix32(hash), idx);
        s->count++;
        tc_policy_on_insert(&s->policy, s->slab, idx, (uint64_t)hash);
    } else {
        trash_push(t, (PyObject *)e->value);
        e->value = value;
        if (e->flags & TC_F_TAGS) {
            tc_tags_detach(&s->tags, s->tagsets[idx]);
            e->flags &= (uint8_t)~TC_F_TAGS;
        }
        tc_policy_touch(&s->policy, s->slab, idx, (uint64_t)hash);
    }
    if (set) {
        s->tagsets[idx] = set;
        e->flags |= TC_F_TAGS;
    }
    s->bytes = s->bytes - e->charge + charge;
    e->charge = (uint32_t)charge;
    if (deadline != e->deadline || (deadline != TC_NO_DEADLINE && !tc_wheel_linked(e)))
        tc_store_set_deadline(s, idx, deadline);
    s->c.sets++;
    enforce_bounds(s, t);
    /* the peak of what is held between operations, not the transient insert-then-evict */
    if (s->bytes > s->peak_bytes) s->peak_bytes = s->bytes;
    return 1;
}

/* ---- bulk ------------------------------------------------------------------------ */

uint32_t tc_store_maintain(tc_store *s, int64_t now, uint32_t budget, int exact, tc_trash *t) {
    if (exact)
        tc_wheel_advance_exact(&s->wheel, s->slab, now);
    else
        tc_wheel_advance(&s->wheel, s->slab, now);
    uint32_t expired = 0, idx;
    while (budget && (idx = tc_wheel_pending(&s->wheel)) != TC_NIL) {
        if (s->slab[idx].deadline <= s->wheel.now) {
            if (tc_trash_reserve(t, 2) < 0) break;
            tc_store_remove(s, idx, TC_RM_EXPIRE, t);
            expired++;
        } else {
            tc_wheel_unlink(&s->wheel, s->slab, idx);
            tc_wheel_schedule(&s->wheel, s->slab, idx);
        }
        if (budget != TC_NIL) budget--;
    }
    return expired;
}

uint32_t tc_store_invalidate_tag(tc_store *s, tc_tag *tag, tc_trash *t) {
    /* Each removal unlinks the head node (it belongs to the entry removed); the tag
     * itself is freed with its last carrier, so it is not touched after that. */
    uint32_t n = tag->count;
    for (uint32_t i = 0; i < n; i++) tc_store_remove(s, tag->head->entry, TC_RM_INVALIDATE, t);
    return n;
}

uint32_t tc_store_invalidate_prefix(tc_store *s, PyObject *prefix, tc_trash *t) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->hwm; i++) {
        tc_entry *e = &s->slab[i];
        if (e->key && has_prefix((PyObject *)e->key, prefix)) {
            tc_store_remove(s, i, TC_RM_INVALIDATE, t);
            n++;
        }
    }
    return n;
}

size_t tc_store_overhead(const tc_store *s) {
    size_t n = (size_t)s->cap * sizeof(tc_entry);
    if (s->slots != empty_slots) n += (size_t)s->nslots * sizeof(uint32_t);
    n += tc_sketch_bytes(&s->policy.sketch);
    if (s->tagsets) {
        n += (size_t)s->cap * sizeof(tc_tagset *);
        for (uint32_t i = 0; i < s->hwm; i++)
            if (s->slab[i].key && (s->slab[i].flags & TC_F_TAGS))
                n += sizeof(tc_tagset) + s->tagsets[i]->n * sizeof(tc_tagnode);
    }
    return n + tc_tags_bytes(&s->tags);
}

/* ---- debugging ------------------------------------------------------------------- */

const char *tc_store_check(const tc_store *s) {
    uint32_t live = 0, freed = 0;
    uint64_t bytes = 0;
    long memberships = 0;
    for (uint32_t i = 0; i < s->hwm; i++) {
        const tc_entry *e = &s->slab[i];
        if (e->key == NULL) continue;
        live++;
        bytes += e->charge;
        PyObject *k = (PyObject *)e->key;
        if (!PyUnicode_CheckExact(k) && !PyBytes_CheckExact(k)) return "key of wrong type";
        if (e->value == NULL) return "live entry without value";
        if (tc_store_find(s, k, tc_key_hash(k)) != i) return "entry not found by its key";
        if (e->flags & TC_F_TAGS) {
            const tc_tagset *set = s->tagsets[i];
            for (uint32_t j = 0; j < set->n; j++) {
                if (set->nodes[j].entry != i) return "tag node names the wrong entry";
                for (uint32_t k2 = 0; k2 < j; k2++)
                    if (set->nodes[k2].tag == set->nodes[j].tag) return "duplicate tag in an entry";
            }
            memberships += set->n;
        }
    }
    for (uint32_t f = s->free_head; f != TC_NIL; f = s->slab[f].pnext) {
        if (f >= s->hwm || s->slab[f].key != NULL) return "free list holds a live or out-of-range slot";
        if (++freed > s->hwm) return "free list cycles";
    }
    if (live != s->count) return "count differs from live entries";
    if (live + freed != s->hwm) return "slots lost: neither live nor free";
    if (bytes != s->bytes) return "bytes differ from the sum of charges";
    uint32_t used = 0;
    for (uint32_t i = 0; i < s->nslots; i++) {
        uint32_t v = s->slots[i];
        if (v == 0) continue;
        uint32_t id = (s->tagged ? S_IDX(v) : v) - 1;
        if (id >= s->hwm || s->slab[id].key == NULL) return "index slot names a free entry";
        if (s->tagged) {
            uint32_t x = mix32(tc_key_hash((PyObject *)s->slab[id].key));
            uint32_t d = dist(home_of(s->nslots, x), i, s->nslots);
            if (make_slot(x, d, id + 1) != v) return "index slot's tag or displacement is wrong";
        }
        used++;
    }
    if (used != s->count) return "index size differs from count";
    if (s->count > s->max_entries) return "more entries than max_entries";
    if (s->max_bytes && s->bytes > s->max_bytes) return "more bytes than max_bytes";
    if (s->bytes > s->peak_bytes) return "peak_bytes below bytes";
    if (tc_policy_check(&s->policy, s->slab, s->hwm) != (long)s->count) return "policy queues inconsistent";
    if (tc_wheel_check(&s->wheel, s->slab, s->hwm) < 0) return "timing wheel inconsistent";
    if (tc_tags_check(&s->tags) != memberships) return "tag index inconsistent";
    return NULL;
}
