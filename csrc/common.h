/*
 * common.h -- shared definitions of the tieredcache C core.
 *
 * The core is split one job per file:
 *
 *   clock.c      the cache clock: monotonic nanoseconds plus a test offset
 *   wheel.c      hierarchical timing wheel that reclaims expired entries
 *   sketch.c     4-bit count-min sketch of access frequencies (TinyLFU)
 *   policy.c     W-TinyLFU eviction: window LRU + segmented LRU + admission
 *   tags.c       tag index: tag -> entries carrying it
 *   store.c      the hash store tying the above together (entries, index, bounds)
 *   lock.c       the store lock, cooperative with the GIL
 *   fence.c      the invalidation fence: raised by a watcher thread, without the GIL
 *   localcache.c the Python type LocalCache
 *   cachedcall.c the Python type CachedCall: a decorated function's hit path
 *   module.c     module init, clock functions, fork hooks
 *
 * clock, wheel, sketch, policy and tags are plain C (no Python.h) so that a C harness
 * can exercise them under sanitizers. Entries are addressed by 32-bit indices into one
 * slab (see entry.h); TC_NIL marks "no entry".
 */
#ifndef TIEREDCACHE_COMMON_H
#define TIEREDCACHE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>

#define TC_NIL ((uint32_t)0xFFFFFFFFu)

/* Largest max_entries: indices are uint32 and the top values are reserved as
 * sentinel ids (see wheel.c). */
#define TC_MAX_ENTRIES ((uint32_t)0x7FFFFFFFu)

/* Deadline of an entry without expiry. */
#define TC_NO_DEADLINE INT64_MAX

#define TC_NS_PER_SEC 1000000000LL

/* Largest TTL accepted: 100 years (keeps deadlines far from int64 overflow). */
#define TC_MAX_TTL_NS (100LL * 366 * 24 * 3600 * TC_NS_PER_SEC)

#if defined(__GNUC__) || defined(__clang__)
#  define TC_LIKELY(x) __builtin_expect(!!(x), 1)
#  define TC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define TC_INLINE static inline __attribute__((always_inline))
#else
#  define TC_LIKELY(x) (x)
#  define TC_UNLIKELY(x) (x)
#  define TC_INLINE static inline
#endif

#ifdef TC_DEBUG
#  define TC_ASSERT(x) assert(x)
#else
#  define TC_ASSERT(x) ((void)0)
#endif

/* Allocation for structures that may be touched without the GIL: these must be the
 * "raw" allocator, which is thread-safe and needs no GIL. Defined in store.c's
 * translation unit as PyMem_Raw*; plain-C harnesses may define them as malloc. */
void *tc_malloc(size_t n);
void *tc_calloc(size_t count, size_t size);
void *tc_realloc(void *p, size_t n);
void tc_free(void *p);

#endif /* TIEREDCACHE_COMMON_H */
