/*
 * tags.c -- the tag index.
 *
 * STRUCTURE
 *
 *   table (open addressing)       tag "shop:42"                  entry 17's tag set
 *   +------+                      +-----------+                  +------------------+
 *   |  *---+--------------------> | hash      |                  | n = 2            |
 *   | NULL |                      | count = 2 |     +----------> | node{tag, prev,  |
 *   |  *   |                      | head *----+-----+            |      next, 17}   |
 *   +------+                      +-----------+                  | node{...}        |
 *                                                                 +------------------+
 *   Each tag owns a doubly-linked list of nodes, one per entry carrying it; the nodes
 *   live in their entry's tag set, so removing an entry unlinks each of its nodes in
 *   O(1) without searching. A tag is created with its first carrier and freed with its
 *   last one, so the index never outlives the entries (memory stays bounded).
 *
 * INVARIANTS
 *   - tag->count == length of tag->head's list > 0 for every indexed tag;
 *   - every node's tag is indexed, and an entry's tag set holds distinct tags.
 *
 * COMPLEXITY
 *   find: O(1) expected; attach/detach: O(tags of the entry); invalidating a tag
 *   (store.c) walks its list: O(entries removed x their tags). The table doubles at
 *   load 1/2 and never needs tombstones (deletion shifts the cluster back).
 *
 * Tag names are compared as UTF-8 bytes; the hash is the caller's (Python's randomised
 * str hash), so colliding names cannot be chosen by an attacker who does not know the
 * process's hash seed.
 */
#include "tags.h"

static inline uint32_t home(const tc_tagindex *ix, uint64_t h) {
    return (uint32_t)((h ^ (h >> 32)) & (ix->nslots - 1));
}

void tc_tags_init(tc_tagindex *ix) {
    /* the table is allocated with the first tag */
    ix->table = NULL;
    ix->nslots = ix->count = 0;
}

void tc_tags_free(tc_tagindex *ix) {
    if (ix->table) {
        for (uint32_t i = 0; i < ix->nslots; i++) tc_free(ix->table[i]);
        tc_free(ix->table);
    }
    ix->table = NULL;
    ix->nslots = ix->count = 0;
}

size_t tc_tags_bytes(const tc_tagindex *ix) {
    size_t n = (size_t)ix->nslots * sizeof(tc_tag *);
    for (uint32_t i = 0; i < ix->nslots; i++)
        if (ix->table[i]) n += sizeof(tc_tag) + ix->table[i]->len + 1;
    return n;
}

static inline int same(const tc_tag *t, const tc_tagref *r) {
    return t->hash == r->hash && t->len == r->len && memcmp(t->name, r->name, r->len) == 0;
}

tc_tag *tc_tags_find(const tc_tagindex *ix, const tc_tagref *ref) {
    if (ix->count == 0) return NULL;
    uint32_t mask = ix->nslots - 1;
    for (uint32_t i = home(ix, ref->hash);; i = (i + 1) & mask) {
        tc_tag *t = ix->table[i];
        if (t == NULL) return NULL;
        if (same(t, ref)) return t;
    }
}

static void place(tc_tag **table, uint32_t nslots, tc_tag *t) {
    uint32_t mask = nslots - 1;
    uint32_t i = (uint32_t)((t->hash ^ (t->hash >> 32)) & mask);
    while (table[i] != NULL) i = (i + 1) & mask;
    table[i] = t;
}

static int grow(tc_tagindex *ix) {
    uint32_t n = ix->nslots ? ix->nslots * 2 : 16;
    tc_tag **t = tc_calloc(n, sizeof(tc_tag *));
    if (t == NULL) return -1;
    for (uint32_t i = 0; i < ix->nslots; i++)
        if (ix->table[i]) place(t, n, ix->table[i]);
    tc_free(ix->table);
    ix->table = t;
    ix->nslots = n;
    return 0;
}

/* Remove tag t (count 0) from the table, shifting its cluster back (Knuth's
 * algorithm R), and free it. */
static void drop(tc_tagindex *ix, tc_tag *t) {
    uint32_t mask = ix->nslots - 1;
    uint32_t i = home(ix, t->hash);
    while (ix->table[i] != t) i = (i + 1) & mask;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        tc_tag *u = ix->table[j];
        if (u == NULL) break;
        uint32_t k = home(ix, u->hash);
        /* move u into the hole at i unless its home lies cyclically in (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        ix->table[i] = u;
        i = j;
    }
    ix->table[i] = NULL;
    ix->count--;
    tc_free(t);
}

static tc_tag *find_or_create(tc_tagindex *ix, const tc_tagref *ref) {
    tc_tag *t = tc_tags_find(ix, ref);
    if (t) return t;
    if ((ix->count + 1) * 2 > ix->nslots && grow(ix) < 0) return NULL;
    t = tc_malloc(sizeof(tc_tag) + ref->len + 1);
    if (t == NULL) return NULL;
    t->hash = ref->hash;
    t->head = NULL;
    t->count = 0;
    t->len = ref->len;
    memcpy(t->name, ref->name, ref->len);
    t->name[ref->len] = '\0';
    place(ix->table, ix->nslots, t);
    ix->count++;
    return t;
}

tc_tagset *tc_tags_attach(tc_tagindex *ix, uint32_t entry, const tc_tagref *refs, uint32_t n) {
    tc_tagset *set = tc_malloc(sizeof(tc_tagset) + (size_t)n * sizeof(tc_tagnode));
    if (set == NULL) return NULL;
    uint32_t made = 0;
    for (; made < n; made++) {
        tc_tag *t = find_or_create(ix, &refs[made]);
        if (t == NULL) break;
        tc_tagnode *node = &set->nodes[made];
        node->tag = t;
        node->entry = entry;
        node->prev = NULL;
        node->next = t->head;
        if (t->head) t->head->prev = node;
        t->head = node;
        t->count++;
    }
    set->n = made;
    if (made < n) { /* out of memory: undo, leaving the index as it was */
        tc_tags_detach(ix, set);
        return NULL;
    }
    return set;
}

void tc_tags_detach(tc_tagindex *ix, tc_tagset *set) {
    for (uint32_t i = 0; i < set->n; i++) {
        tc_tagnode *node = &set->nodes[i];
        tc_tag *t = node->tag;
        if (node->prev) node->prev->next = node->next; else t->head = node->next;
        if (node->next) node->next->prev = node->prev;
        if (--t->count == 0) drop(ix, t);
    }
    tc_free(set);
}

long tc_tags_check(const tc_tagindex *ix) {
    long total = 0;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < ix->nslots; i++) {
        const tc_tag *t = ix->table[i];
        if (t == NULL) continue;
        seen++;
        if (tc_tags_find(ix, &(tc_tagref){t->hash, t->name, t->len}) != t) return -1;
        uint32_t n = 0;
        const tc_tagnode *prev = NULL;
        for (const tc_tagnode *node = t->head; node; node = node->next) {
            if (node->tag != t || node->prev != prev) return -1;
            prev = node;
            if (++n > t->count) return -1;
        }
        if (n != t->count || n == 0) return -1;
        total += n;
    }
    return seen == ix->count ? total : -1;
}
