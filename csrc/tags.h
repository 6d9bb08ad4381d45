/* tags.h -- tag index: tag -> the entries carrying it (see tags.c). Plain C. */
#ifndef TIEREDCACHE_TAGS_H
#define TIEREDCACHE_TAGS_H

#include "common.h"

typedef struct tc_tag tc_tag;

typedef struct tc_tagnode {
    tc_tag *tag;
    struct tc_tagnode *prev, *next; /* the tag's list of carriers */
    uint32_t entry;                 /* slab index of the carrier  */
} tc_tagnode;

struct tc_tag {
    uint64_t hash;    /* the str's Python hash, supplied by the caller */
    tc_tagnode *head; /* carriers, in no particular order              */
    uint32_t count;   /* number of carriers (> 0 while indexed)        */
    uint32_t len;     /* name length in bytes (UTF-8)                  */
    char name[];
};

/* An entry's tags: one node per distinct tag. */
typedef struct tc_tagset {
    uint32_t n;
    tc_tagnode nodes[];
} tc_tagset;

/* A tag as the caller names it (hash, UTF-8 bytes); the bytes are copied. */
typedef struct tc_tagref {
    uint64_t hash;
    const char *name;
    uint32_t len;
} tc_tagref;

typedef struct tc_tagindex {
    tc_tag **table; /* open addressing, linear probing, NULL = empty */
    uint32_t nslots; /* power of two */
    uint32_t count;  /* tags indexed */
} tc_tagindex;

void tc_tags_init(tc_tagindex *ix);
void tc_tags_free(tc_tagindex *ix); /* every tag set must have been detached */
tc_tag *tc_tags_find(const tc_tagindex *ix, const tc_tagref *ref);
tc_tagset *tc_tags_attach(tc_tagindex *ix, uint32_t entry, const tc_tagref *refs, uint32_t n);
void tc_tags_detach(tc_tagindex *ix, tc_tagset *set);
size_t tc_tags_bytes(const tc_tagindex *ix);
long tc_tags_check(const tc_tagindex *ix); /* total memberships, -1 if inconsistent */

#endif
