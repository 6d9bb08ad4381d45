/*
 * localcache.c -- the Python type tieredcache.LocalCache.
 *
 * STRUCTURE
 *   A LocalCacheObject owns one tc_store (store.c) and one tc_lock (lock.c). Every
 *   method follows the same shape:
 *
 *     1. parse and validate arguments, normalise the key to an exact str/bytes and hash
 *        it, compute the charge (sys.getsizeof may run Python code: it happens here);
 *     2. lc_enter(): wait, without the GIL, while a bulk operation owns the store;
 *     3. work on the store: no Python code runs, no Python object is allocated, every
 *        reference that must be dropped goes to a tc_trash;
 *     4. build the result, then flush the trash (DECREFs may run __del__, which may
 *        call back into this cache: the store is consistent by then).
 *
 *   Bulk operations (invalidate_tags, invalidate_prefix, clear, expire, len) over more
 *   than TC_BULK_GIL entries take the store with tc_lock_take(), release the GIL for
 *   step 3, give the store back, and retake the GIL for step 4.
 *
 * REFERENCES
 *   The store owns one reference to each key and value (store.c). Methods return new
 *   references. Arguments are borrowed; a normalised key is a new reference held in
 *   `owned` and released at the end of the call.
 *
 * GC
 *   tp_traverse visits every value (keys are str/bytes, which hold no references);
 *   tp_clear detaches the store first and drops the references after; dealloc is
 *   UnTrack -> weakrefs -> clear -> free -> Py_DECREF(type), as in CPython's lru_cache.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>

#include "localcache.h"
#include <structmember.h>
#include "clock.h"
#include "fence.h"
#include "lock.h"
#include "store.h"

#ifdef Py_GIL_DISABLED
#error "tieredcache's store lock relies on the GIL (see lock.c)"
#endif

/* Bulk operations touching more entries than this release the GIL. */
#define TC_BULK_GIL 2048
/* Reads run the wheel's maintenance once every TC_READ_MAINTAIN_EVERY operations;
 * writes every time. Each run expires or reschedules at most TC_MAINTAIN_BUDGET. */
#define TC_READ_MAINTAIN_EVERY 32
#define TC_MAINTAIN_BUDGET 16
/* Tags of one set() kept on the stack before allocating. */
#define TC_TAGS_INLINE 8

typedef struct LocalCacheObject {
    PyObject_HEAD
    tc_store store;
    tc_lock lock;
    int64_t default_ttl; /* ns, or TC_NO_DEADLINE */
    uint32_t reads;      /* reads since the last maintenance */
    tc_fence fence;      /* raised when the owner's invalidation socket has data (fence.c) */
    PyObject *weakreflist;
    struct LocalCacheObject *reg_prev, *reg_next; /* every live cache, for fork */
} LocalCacheObject;

/* ---- registry of live caches (guarded by the GIL) --------------------------------- */

static LocalCacheObject *registry;
/* Set from the before-fork hook until the fork is done. Other fork hooks run after ours
 * and may release the GIL (logging takes its lock); a bulk operation that starts in that
 * window keeps the GIL, so none can be half done when fork() copies the process. */
static int forking;

static void registry_add(LocalCacheObject *self) {
    self->reg_prev = NULL;
    self->reg_next = registry;
    if (registry) registry->reg_prev = self;
    registry = self;
}

static void registry_remove(LocalCacheObject *self) {
    if (self->reg_prev) self->reg_prev->reg_next = self->reg_next; else if (registry == self) registry = self->reg_next;
    if (self->reg_next) self->reg_next->reg_prev = self->reg_prev;
    self->reg_prev = self->reg_next = NULL;
}

void tc_localcache_before_fork(void) {
    forking = 1;
    /* A bulk operation in another thread may be changing a store without the GIL; let
     * it finish (it does not need the GIL to give the store back). None can start
     * afterwards: starting one needs the GIL, which the forking thread holds. */
    for (LocalCacheObject *c = registry; c; c = c->reg_next)
        if (tc_lock_busy(&c->lock)) tc_lock_wait_idle(&c->lock);
}

void tc_localcache_after_fork_parent(void) { forking = 0; }

void tc_localcache_after_fork_child(void) {
    forking = 0;
    for (LocalCacheObject *c = registry; c; c = c->reg_next) {
        tc_lock_reinit(&c->lock);
        tc_fence_after_fork_child(&c->fence);
    }
}

/* ---- helpers --------------------------------------------------------------------- */

static void lc_wait(LocalCacheObject *self) {
    while (tc_lock_busy(&self->lock)) {
        Py_BEGIN_ALLOW_THREADS
        tc_lock_wait_idle(&self->lock);
        Py_END_ALLOW_THREADS
    }
}

/* Wait until no bulk operation owns the store. Holding the GIL afterwards guarantees
 * none starts until this thread releases it. */
TC_INLINE void lc_enter(LocalCacheObject *self) {
    if (TC_UNLIKELY(tc_lock_busy(&self->lock))) lc_wait(self);
}

static PyObject *names[8];
enum { N_KEY, N_VALUE, N_TTL, N_TAGS, N_SIZE, N_DEFAULT, N_MAPPING, N_COUNT };
static const char *const name_text[N_COUNT] = {"key", "value", "ttl", "tags", "size", "default", "mapping"};

int tc_localcache_init_names(void) {
    for (int i = 0; i < N_COUNT; i++) {
        if (names[i]) continue;
        names[i] = PyUnicode_InternFromString(name_text[i]);
        if (names[i] == NULL) return -1;
    }
    return 0;
}

/* Parse FASTCALL arguments against params (indices into names); out[i] is borrowed
 * or NULL when not given. Returns 0 or -1 with TypeError. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const int *params, int nparams, int nrequired, PyObject **out) {
    for (int i = 0; i < nparams; i++) out[i] = NULL;
    if (nargs > nparams) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, nparams, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < nparams && found < 0; i++)
            if (kw == names[params[i]]) found = i;
        for (int i = 0; i < nparams && found < 0; i++)
            if (PyUnicode_Compare(kw, names[params[i]]) == 0) found = i;
        if (found < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, kw);
            return -1;
        }
        if (out[found]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", fname, kw);
            return -1;
        }
        out[found] = args[nargs + k];
    }
    for (int i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, name_text[params[i]]);
            return -1;
        }
    }
    return 0;
}

/* Normalise a key to an exact str or bytes and hash it. Returns a borrowed key (or a
 * new one stored in *owned for subclasses), NULL with TypeError otherwise. */
TC_INLINE PyObject *prepare_key(PyObject *key, Py_hash_t *hash, PyObject **owned) {
    if (TC_LIKELY(PyUnicode_CheckExact(key))) {
        Py_hash_t h = ((PyASCIIObject *)key)->hash;
        *hash = h != -1 ? h : PyObject_Hash(key);
        return key;
    }
    if (PyBytes_CheckExact(key)) {
        *hash = PyObject_Hash(key);
        return key;
    }
    PyObject *plain;
    if (PyUnicode_Check(key))
        plain = PyUnicode_FromKindAndData(PyUnicode_KIND(key), PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key));
    else if (PyBytes_Check(key))
        plain = PyBytes_FromStringAndSize(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    else {
        PyErr_Format(PyExc_TypeError, "key must be str or bytes, not %.100s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    if (plain == NULL) return NULL;
    *owned = plain;
    *hash = PyObject_Hash(plain);
    return plain;
}

int tc_parse_seconds(PyObject *obj, const char *argname, int allow_none, int64_t *ns) {
    if (obj == NULL || obj == Py_None) {
        if (allow_none) {
            *ns = TC_NO_DEADLINE;
            return 0;
        }
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds, not None", argname);
        return -1;
    }
    if (PyBool_Check(obj) || !(PyLong_Check(obj) || PyFloat_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds%s, not %.100s", argname,
                     allow_none ? " or None" : "", Py_TYPE(obj)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        v = INFINITY;
    }
    if (!(v > 0) || isinf(v)) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive, finite number of seconds, got %R", argname, obj);
        return -1;
    }
    if (v * 1e9 > (double)TC_MAX_TTL_NS) {
        PyErr_Format(PyExc_ValueError, "%s must be at most 100 years (%lld seconds), got %R", argname,
                     (long long)(TC_MAX_TTL_NS / TC_NS_PER_SEC), obj);
        return -1;
    }
    int64_t n = (int64_t)ceil(v * 1e9);
    *ns = n < 1 ? 1 : n;
    return 0;
}

/* size= argument or the value's default charge; UINT64_MAX for "too large". */
static int compute_charge(PyObject *value, PyObject *size, uint64_t *charge) {
    if (size != NULL && size != Py_None) {
        if (PyBool_Check(size) || !PyLong_Check(size)) {
            PyErr_Format(PyExc_TypeError, "size must be an int or None, not %.100s", Py_TYPE(size)->tp_name);
            return -1;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(size, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (overflow < 0 || (overflow == 0 && v < 0)) {
            PyErr_Format(PyExc_ValueError, "size must be a non-negative int, got %R", size);
            return -1;
        }
        *charge = overflow > 0 ? UINT64_MAX : (uint64_t)v;
        return 0;
    }
    if (PyBytes_Check(value)) {
        *charge = (uint64_t)PyBytes_GET_SIZE(value);
        return 0;
    }
    if (PyUnicode_Check(value)) {
        *charge = (uint64_t)PyUnicode_GET_LENGTH(value);
        return 0;
    }
    /* sys.getsizeof without the method lookup, for the common scalars whose size is
     * their layout (tests/test_local_conformance.py checks these equal getsizeof) */
    PyTypeObject *tp = Py_TYPE(value);
    if (tp == &PyFloat_Type || value == Py_None) {
        *charge = (uint64_t)tp->tp_basicsize;
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (tp == &PyLong_Type || tp == &PyBool_Type) {
        Py_ssize_t digits = Py_SIZE(value) < 0 ? -Py_SIZE(value) : Py_SIZE(value);
        if (digits == 0) digits = 1; /* zero still has one digit allocated */
        *charge = (uint64_t)(offsetof(PyLongObject, ob_digit) + (size_t)digits * sizeof(digit));
        return 0;
    }
#endif
    size_t n = _PySys_GetSizeOf(value);
    if (n == (size_t)-1 && PyErr_Occurred()) return -1;
    *charge = (uint64_t)n;
    return 0;
}

typedef struct tagbuf {
    tc_tagref *refs;
    uint32_t n;
    PyObject *seq;  /* keeps the tag strings (and their UTF-8) alive */
    PyObject *keep; /* surrogatepass encodings, if any */
    tc_tagref inline_refs[TC_TAGS_INLINE];
} tagbuf;

static void tagbuf_release(tagbuf *b) {
    if (b->refs != b->inline_refs) PyMem_Free(b->refs);
    Py_CLEAR(b->seq);
    Py_CLEAR(b->keep);
}

/* A tag's bytes: its UTF-8 (cached on the str), or for a str holding lone surrogates
 * its "surrogatepass" encoding, which no other str shares (valid UTF-8 never encodes a
 * surrogate); that bytes object is kept alive in *keep (a list made on demand). */
static int tag_ref(PyObject *tag, tc_tagref *ref, PyObject **keep) {
    if (!PyUnicode_Check(tag)) {
        PyErr_Format(PyExc_TypeError, "tags must be str, not %.100s", Py_TYPE(tag)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(tag, &len);
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        PyObject *b = PyUnicode_AsEncodedString(tag, "utf-8", "surrogatepass");
        if (b == NULL) return -1;
        if (*keep == NULL && (*keep = PyList_New(0)) == NULL) {
            Py_DECREF(b);
            return -1;
        }
        int r = PyList_Append(*keep, b);
        Py_DECREF(b);
        if (r < 0) return -1;
        utf8 = PyBytes_AS_STRING(b);
        len = PyBytes_GET_SIZE(b);
    }
    if ((uint64_t)len > 0xFFFFFFF0u) {
        PyErr_SetString(PyExc_ValueError, "a tag must be shorter than 4 GiB");
        return -1;
    }
    /* Python's randomised bytes hash of the UTF-8: never calls a subclass's __hash__ */
    ref->hash = (uint64_t)_Py_HashBytes(utf8, len);
    ref->name = utf8;
    ref->len = (uint32_t)len;
    return 0;
}

/* Parse `tags` (an iterable of str, not a lone str) into distinct refs. */
static int parse_tags(PyObject *tags, tagbuf *b) {
    b->refs = b->inline_refs;
    b->n = 0;
    b->seq = NULL;
    b->keep = NULL;
    if (tags == NULL || tags == Py_None) return 0;
    if (PyUnicode_Check(tags) || PyBytes_Check(tags)) {
        PyErr_Format(PyExc_TypeError, "tags must be an iterable of str, not a single %.100s (use tags=[%R])",
                     Py_TYPE(tags)->tp_name, tags);
        return -1;
    }
    if (PyTuple_CheckExact(tags) && PyTuple_GET_SIZE(tags) == 0) return 0;
    b->seq = PySequence_Fast(tags, "tags must be an iterable of str");
    if (b->seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(b->seq);
    if (n > TC_TAGS_INLINE) {
        if ((size_t)n > 0xFFFFFFu) {
            PyErr_SetString(PyExc_ValueError, "too many tags for one entry");
            goto error;
        }
        b->refs = PyMem_Malloc((size_t)n * sizeof(tc_tagref));
        if (b->refs == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    PyObject **items = PySequence_Fast_ITEMS(b->seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        tc_tagref r;
        if (tag_ref(items[i], &r, &b->keep) < 0) goto error;
        int dup = 0;
        for (uint32_t j = 0; j < b->n && !dup; j++)
            dup = b->refs[j].hash == r.hash && b->refs[j].len == r.len && memcmp(b->refs[j].name, r.name, r.len) == 0;
        if (!dup) b->refs[b->n++] = r;
    }
    return 0;
error:
    tagbuf_release(b);
    return -1;
}

/* Expire what the wheel says is due, within the budget. */
TC_INLINE void maintain(LocalCacheObject *self, tc_trash *t) {
    if (self->store.wheel.count)
        tc_store_maintain(&self->store, tc_now_coarse(), TC_MAINTAIN_BUDGET, 0, t);
}

TC_INLINE int entry_live(tc_entry *e) {
    return e->deadline == TC_NO_DEADLINE || !tc_expired(e->deadline);
}

/* ---- construction and GC ---------------------------------------------------------- */

static PyObject *lc_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_entries", "max_bytes", "default_ttl", NULL};
    PyObject *max_entries_o = NULL, *max_bytes_o = Py_None, *default_ttl_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO:LocalCache", kwlist, &max_entries_o, &max_bytes_o,
                                     &default_ttl_o))
        return NULL;
    long long max_entries = 100000;
    if (max_entries_o != NULL) {
        if (PyBool_Check(max_entries_o) || !PyLong_Check(max_entries_o)) {
            PyErr_Format(PyExc_TypeError, "max_entries must be an int, not %.100s", Py_TYPE(max_entries_o)->tp_name);
            return NULL;
        }
        int overflow;
        max_entries = PyLong_AsLongLongAndOverflow(max_entries_o, &overflow);
        if (max_entries == -1 && PyErr_Occurred()) return NULL;
        if (overflow || max_entries < 1 || max_entries > (long long)TC_MAX_ENTRIES) {
            PyErr_Format(PyExc_ValueError, "max_entries must be between 1 and %u, got %R", TC_MAX_ENTRIES,
                         max_entries_o);
            return NULL;
        }
    }
    uint64_t max_bytes = 0;
    if (max_bytes_o != Py_None) {
        if (PyBool_Check(max_bytes_o) || !PyLong_Check(max_bytes_o)) {
            PyErr_Format(PyExc_TypeError, "max_bytes must be an int or None, not %.100s", Py_TYPE(max_bytes_o)->tp_name);
            return NULL;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(max_bytes_o, &overflow);
        if (v == -1 && PyErr_Occurred()) return NULL;
        if (overflow < 0 || (overflow == 0 && v < 1)) {
            PyErr_Format(PyExc_ValueError, "max_bytes must be a positive int or None, got %R", max_bytes_o);
            return NULL;
        }
        max_bytes = overflow > 0 ? UINT64_MAX : (uint64_t)v;
    }
    int64_t default_ttl;
    if (tc_parse_seconds(default_ttl_o, "default_ttl", 1, &default_ttl) < 0) return NULL;

    LocalCacheObject *self = (LocalCacheObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->weakreflist = NULL;
    self->default_ttl = default_ttl;
    self->reads = 0;
    if (tc_fence_init(&self->fence) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (tc_lock_init(&self->lock) < 0) {
        /* nothing else to undo: the store is zeroed */
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (tc_store_init(&self->store, (uint32_t)max_entries, max_bytes, tc_now()) < 0) {
        tc_lock_destroy(&self->lock);
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    registry_add(self);
    return (PyObject *)self;
}

static int lc_traverse(LocalCacheObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    /* a bulk operation elsewhere may be unlinking without the GIL: let it finish (it
     * does not need the GIL to do so) */
    if (tc_lock_busy(&self->lock)) tc_lock_wait_idle(&self->lock);
    tc_store *s = &self->store;
    for (uint32_t i = 0; i < s->hwm; i++) {
        if (s->slab[i].key) Py_VISIT((PyObject *)s->slab[i].value);
    }
    return 0;
}

/* Drop the references held by a detached slab, then free it. Needs the GIL. */
static void release_slab(tc_entry *slab, uint32_t hwm) {
    for (uint32_t i = 0; i < hwm; i++) {
        if (slab[i].key == NULL) continue;
        Py_DECREF((PyObject *)slab[i].key);
        Py_DECREF((PyObject *)slab[i].value);
    }
    tc_free(slab);
}

/* Empty the store, then drop the references (the store is consistent meanwhile). */
static void lc_empty(LocalCacheObject *self) {
    if (tc_lock_busy(&self->lock)) tc_lock_wait_idle(&self->lock);
    uint32_t hwm, count;
    tc_entry *slab = tc_store_detach(&self->store, &hwm, &count, tc_now());
    release_slab(slab, hwm);
}

static int lc_clear_refs(LocalCacheObject *self) {
    lc_empty(self);
    return 0;
}

static void lc_dealloc(LocalCacheObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist) PyObject_ClearWeakRefs((PyObject *)self);
    registry_remove(self);
    Py_BEGIN_ALLOW_THREADS
    tc_fence_destroy(&self->fence);
    Py_END_ALLOW_THREADS
    lc_empty(self);
    tc_store_destroy(&self->store);
    tc_lock_destroy(&self->lock);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- reads ----------------------------------------------------------------------- */

/* The value of key (new reference), or dflt (new reference), or NULL with KeyError when
 * dflt is NULL. Counts a hit or a miss. */
TC_INLINE PyObject *lookup(LocalCacheObject *self, PyObject *key, PyObject *dflt) {
    PyObject *owned = NULL, *result;
    Py_hash_t h;
    key = prepare_key(key, &h, &owned);
    if (key == NULL) return NULL;
    lc_enter(self);
    tc_store *s = &self->store;
    tc_trash t;
    tc_trash_init(&t);
    uint32_t idx = tc_store_find(s, key, h);
    if (TC_LIKELY(idx != TC_NIL)) {
        tc_entry *e = &s->slab[idx];
        if (TC_LIKELY(entry_live(e))) {
            result = (PyObject *)e->value;
            Py_INCREF(result);
            tc_store_hit(s, idx, h);
            goto done;
        }
        tc_store_remove(s, idx, TC_RM_EXPIRE, &t);
    }
    tc_store_miss(s);
    if (dflt) {
        result = dflt;
        Py_INCREF(result);
    } else {
        result = NULL;
    }
done:
    if (TC_UNLIKELY(++self->reads >= TC_READ_MAINTAIN_EVERY)) {
        self->reads = 0;
        maintain(self, &t);
    }
    if (t.len) tc_trash_flush(&t);
    if (result == NULL) PyErr_SetObject(PyExc_KeyError, key);
    Py_XDECREF(owned);
    return result;
}

static PyObject *lc_get(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (TC_UNLIKELY(nargs < 1 || nargs > 2)) {
        PyErr_Format(PyExc_TypeError, "get() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    return lookup(self, args[0], nargs == 2 ? args[1] : Py_None);
}

static PyObject *lc_getitem(LocalCacheObject *self, PyObject *key) { return lookup(self, key, NULL); }

PyObject *tc_localcache_get(PyObject *cache, PyObject *key, PyObject *dflt) {
    return lookup((LocalCacheObject *)cache, key, dflt);
}

static int lc_contains(LocalCacheObject *self, PyObject *key) {
    PyObject *owned = NULL;
    Py_hash_t h;
    key = prepare_key(key, &h, &owned);
    if (key == NULL) return -1;
    lc_enter(self);
    uint32_t idx = tc_store_find(&self->store, key, h);
    int found = idx != TC_NIL && entry_live(&self->store.slab[idx]);
    Py_XDECREF(owned);
    return found;
}

static PyObject *lc_get_many(LocalCacheObject *self, PyObject *keys) {
    PyObject *result = PyDict_New(), *it = NULL, *k;
    if (result == NULL) return NULL;
    it = PyObject_GetIter(keys);
    if (it == NULL) goto error;
    while ((k = PyIter_Next(it)) != NULL) {
        /* the result is keyed by the plain str/bytes: a subclass's __hash__ never runs */
        PyObject *owned = NULL;
        Py_hash_t h;
        PyObject *plain = prepare_key(k, &h, &owned);
        if (plain == NULL) {
            Py_DECREF(k);
            goto error;
        }
        if (owned) {
            Py_DECREF(k);
            k = owned;
        }
        PyObject *v = lookup(self, k, NULL);
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                Py_DECREF(k);
                goto error;
            }
            PyErr_Clear();
        } else {
            int r = PyDict_SetItem(result, k, v);
            Py_DECREF(v);
            if (r < 0) {
                Py_DECREF(k);
                goto error;
            }
        }
        Py_DECREF(k);
    }
    if (PyErr_Occurred()) goto error;
    Py_DECREF(it);
    return result;
error:
    Py_XDECREF(it);
    Py_DECREF(result);
    return NULL;
}

static PyObject *lc_ttl(LocalCacheObject *self, PyObject *key) {
    PyObject *owned = NULL, *result = NULL;
    Py_hash_t h;
    key = prepare_key(key, &h, &owned);
    if (key == NULL) return NULL;
    lc_enter(self);
    tc_trash t;
    tc_trash_init(&t);
    uint32_t idx = tc_store_find(&self->store, key, h);
    int64_t deadline = 0, now = 0;
    int found = 0;
    if (idx != TC_NIL) {
        deadline = self->store.slab[idx].deadline;
        now = tc_now();
        if (deadline == TC_NO_DEADLINE || deadline > now)
            found = 1;
        else
            tc_store_remove(&self->store, idx, TC_RM_EXPIRE, &t);
    }
    if (!found)
        PyErr_SetObject(PyExc_KeyError, key);
    else if (deadline == TC_NO_DEADLINE)
        result = Py_NewRef(Py_None);
    else
        result = PyFloat_FromDouble((double)(deadline - now) / 1e9);
    Py_XDECREF(owned);
    if (t.len) tc_trash_flush(&t);
    return result;
}

/* ---- writes ---------------------------------------------------------------------- */

/* Store one item whose key is prepared (key, h) and whose TTL, charge and tags are
 * parsed; tb is left to the caller. 1 stored, 0 not stored (too large), -1 error. */
static int put_parsed(LocalCacheObject *self, PyObject *key, Py_hash_t h, PyObject *value, int64_t ttl_ns,
                      uint64_t charge, const tagbuf *tb) {
    int64_t deadline = ttl_ns == TC_NO_DEADLINE ? TC_NO_DEADLINE : tc_now() + ttl_ns;
    lc_enter(self);
    tc_trash t;
    tc_trash_init(&t);
    maintain(self, &t);
    int r = tc_store_put(&self->store, key, h, value, deadline, charge, tb->refs, tb->n, &t);
    if (t.len) tc_trash_flush(&t);
    if (r < 0) PyErr_NoMemory();
    return r;
}

/* 1 stored, 0 not stored (too large), -1 error. */
static int do_set(LocalCacheObject *self, PyObject *key, PyObject *value, PyObject *ttl, PyObject *tags,
                  PyObject *size) {
    PyObject *owned = NULL;
    Py_hash_t h;
    int64_t ttl_ns = self->default_ttl;
    uint64_t charge;
    tagbuf tb;
    key = prepare_key(key, &h, &owned);
    if (key == NULL) return -1;
    if (ttl != NULL && ttl != Py_None && tc_parse_seconds(ttl, "ttl", 0, &ttl_ns) < 0) goto error;
    if (compute_charge(value, size, &charge) < 0) goto error;
    if (parse_tags(tags, &tb) < 0) goto error;
    int r = put_parsed(self, key, h, value, ttl_ns, charge, &tb);
    tagbuf_release(&tb);
    Py_XDECREF(owned);
    return r;
error:
    Py_XDECREF(owned);
    return -1;
}

static const int set_params[] = {N_KEY, N_VALUE, N_TTL, N_TAGS, N_SIZE};

static PyObject *lc_set(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *a[5];
    if (TC_LIKELY(kwnames == NULL && nargs == 2)) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = a[3] = a[4] = NULL;
    } else if (parse_args("set", args, nargs, kwnames, set_params, 5, 2, a) < 0) {
        return NULL;
    }
    int r = do_set(self, a[0], a[1], a[2], a[3], a[4]);
    if (r < 0) return NULL;
    return Py_NewRef(r ? Py_True : Py_False);
}

static int lc_ass_subscript(LocalCacheObject *self, PyObject *key, PyObject *value);

/* The TTL and the tags are parsed once, for every item (a one-shot iterable of tags
 * tags them all), and they, every pair and every key are checked before the first item
 * is stored: a bad argument stores nothing, even with an empty mapping. */
static PyObject *lc_set_many(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const int params[] = {N_MAPPING, N_TTL, N_TAGS};
    PyObject *a[3];
    if (parse_args("set_many", args, nargs, kwnames, params, 3, 1, a) < 0) return NULL;
    if (!PyDict_Check(a[0])) {
        int has = PyObject_HasAttrString(a[0], "items") && PyObject_HasAttrString(a[0], "keys");
        if (!has || PyUnicode_Check(a[0]) || PyBytes_Check(a[0])) {
            PyErr_Format(PyExc_TypeError, "set_many() mapping must be a mapping, not %.100s",
                         Py_TYPE(a[0])->tp_name);
            return NULL;
        }
    }
    int64_t ttl_ns = self->default_ttl;
    if (a[1] != NULL && a[1] != Py_None && tc_parse_seconds(a[1], "ttl", 0, &ttl_ns) < 0) return NULL;
    tagbuf tb;
    if (parse_tags(a[2], &tb) < 0) return NULL;
    PyObject *items = PyMapping_Items(a[0]);
    if (items == NULL) goto error;
    Py_ssize_t stored = 0, n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "set_many() mapping items must be (key, value) pairs");
            goto error;
        }
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        if (!PyUnicode_Check(key) && !PyBytes_Check(key)) {
            PyErr_Format(PyExc_TypeError, "key must be str or bytes, not %.100s", Py_TYPE(key)->tp_name);
            goto error;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i), *owned = NULL, *value = PyTuple_GET_ITEM(pair, 1);
        uint64_t charge;
        Py_hash_t h;
        if (compute_charge(value, NULL, &charge) < 0) goto error;
        PyObject *key = prepare_key(PyTuple_GET_ITEM(pair, 0), &h, &owned);
        if (key == NULL) goto error;
        int r = put_parsed(self, key, h, value, ttl_ns, charge, &tb);
        Py_XDECREF(owned);
        if (r < 0) goto error;
        stored += r;
    }
    Py_DECREF(items);
    tagbuf_release(&tb);
    return PyLong_FromSsize_t(stored);
error:
    Py_XDECREF(items);
    tagbuf_release(&tb);
    return NULL;
}

/* 1 removed, 0 absent, -1 error. */
static int do_delete(LocalCacheObject *self, PyObject *key) {
    PyObject *owned = NULL;
    Py_hash_t h;
    key = prepare_key(key, &h, &owned);
    if (key == NULL) return -1;
    lc_enter(self);
    tc_trash t;
    tc_trash_init(&t);
    uint32_t idx = tc_store_find(&self->store, key, h);
    int removed = 0;
    if (idx != TC_NIL) {
        /* an expired entry counts as absent, but goes all the same */
        removed = entry_live(&self->store.slab[idx]);
        tc_store_remove(&self->store, idx, removed ? TC_RM_DELETE : TC_RM_EXPIRE, &t);
    }
    maintain(self, &t);
    Py_XDECREF(owned);
    if (t.len) tc_trash_flush(&t);
    return removed;
}

static PyObject *lc_delete(LocalCacheObject *self, PyObject *key) {
    int r = do_delete(self, key);
    if (r < 0) return NULL;
    return Py_NewRef(r ? Py_True : Py_False);
}

static int lc_ass_subscript(LocalCacheObject *self, PyObject *key, PyObject *value) {
    if (value != NULL) return do_set(self, key, value, NULL, NULL, NULL) < 0 ? -1 : 0;
    int r = do_delete(self, key);
    if (r == 0) PyErr_SetObject(PyExc_KeyError, key);
    return r > 0 ? 0 : -1;
}

static PyObject *lc_touch(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const int params[] = {N_KEY, N_TTL};
    PyObject *a[2], *owned = NULL, *key;
    Py_hash_t h;
    int64_t ttl_ns;
    if (parse_args("touch", args, nargs, kwnames, params, 2, 2, a) < 0) return NULL;
    key = prepare_key(a[0], &h, &owned);
    if (key == NULL) return NULL;
    if (tc_parse_seconds(a[1], "ttl", 1, &ttl_ns) < 0) {
        Py_XDECREF(owned);
        return NULL;
    }
    lc_enter(self);
    tc_trash t;
    tc_trash_init(&t);
    uint32_t idx = tc_store_find(&self->store, key, h);
    int found = 0;
    if (idx != TC_NIL) {
        if (entry_live(&self->store.slab[idx])) {
            found = 1;
            tc_store_set_deadline(&self->store, idx,
                                  ttl_ns == TC_NO_DEADLINE ? TC_NO_DEADLINE : tc_now() + ttl_ns);
        } else {
            tc_store_remove(&self->store, idx, TC_RM_EXPIRE, &t);
        }
    }
    Py_XDECREF(owned);
    if (t.len) tc_trash_flush(&t);
    return Py_NewRef(found ? Py_True : Py_False);
}

/* ---- bulk ------------------------------------------------------------------------ */

typedef enum { BULK_TAGS, BULK_PREFIX, BULK_CLEAR, BULK_EXPIRE } bulk_kind;

typedef struct bulk_job {
    bulk_kind kind;
    const tc_tagref *refs;
    uint32_t nrefs;
    PyObject *prefix;
    uint64_t removed;
    tc_entry *detached; /* clear: the old slab, released with the GIL */
    uint32_t detached_hwm;
} bulk_job;

/* The store work of a bulk operation: no Python calls, runs with or without the GIL. */
static void bulk_work(tc_store *s, bulk_job *job, tc_trash *t) {
    switch (job->kind) {
    case BULK_TAGS:
        for (uint32_t i = 0; i < job->nrefs; i++) {
            /* found anew each time: invalidating one tag may free another */
            tc_tag *tag = tc_tags_find(&s->tags, &job->refs[i]);
            if (tag) job->removed += tc_store_invalidate_tag(s, tag, t);
        }
        break;
    case BULK_PREFIX:
        job->removed = tc_store_invalidate_prefix(s, job->prefix, t);
        break;
    case BULK_CLEAR: {
        uint32_t count;
        job->detached = tc_store_detach(s, &job->detached_hwm, &count, tc_now());
        job->removed = count;
        break;
    }
    case BULK_EXPIRE:
        /* the exact pass was started under the GIL (run_bulk); finish it */
        job->removed += tc_store_maintain(s, s->wheel.now, TC_NIL, 0, t);
        break;
    }
}

/* Run a bulk job: reserve room for its references, release the GIL if it is large,
 * then drop the references with the GIL. Returns the number of entries removed, or -1
 * with an exception. */
static long long run_bulk(LocalCacheObject *self, bulk_job *job) {
    lc_enter(self);
    tc_store *s = &self->store;
    uint64_t work;
    switch (job->kind) {
    case BULK_TAGS:
        work = 0;
        for (uint32_t i = 0; i < job->nrefs; i++) {
            tc_tag *tag = tc_tags_find(&s->tags, &job->refs[i]);
            if (tag) work += tag->count;
        }
        break;
    case BULK_EXPIRE: {
        /* Expire what is due, up to TC_BULK_GIL entries under the GIL; only a larger
         * sweep (work still pending) continues without it. */
        tc_trash first;
        tc_trash_init(&first);
        job->removed = tc_store_maintain(s, tc_now(), TC_BULK_GIL, 1, &first);
        work = tc_wheel_pending(&s->wheel) == TC_NIL ? 0 : TC_BULK_GIL + 1;
        tc_trash_flush(&first);
        if (work == 0) return (long long)job->removed;
        lc_enter(self); /* the flush may have run code that started a bulk operation */
        break;
    }
    default:
        work = s->count;
        break;
    }
    if (work == 0) return 0;
    tc_trash t;
    tc_trash_init(&t);
    /* expire grows its trash as it goes (it may stop early; reads stay exact); clear
     * detaches the whole slab instead */
    size_t reserve = job->kind == BULK_EXPIRE || job->kind == BULK_CLEAR ? 0 : 2 * (size_t)work;
    if (tc_trash_reserve(&t, reserve) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (work > TC_BULK_GIL && !forking) {
        tc_lock_take(&self->lock);
        Py_BEGIN_ALLOW_THREADS
        bulk_work(s, job, &t);
        tc_lock_give(&self->lock);
        Py_END_ALLOW_THREADS
    } else {
        bulk_work(s, job, &t);
    }
    tc_trash_flush(&t);
    if (job->detached) release_slab(job->detached, job->detached_hwm);
    return (long long)job->removed;
}

static PyObject *lc_invalidate_tags(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs) {
    tc_tagref inline_refs[TC_TAGS_INLINE], *refs = inline_refs;
    if (nargs > TC_TAGS_INLINE) {
        refs = PyMem_Malloc((size_t)nargs * sizeof(tc_tagref));
        if (refs == NULL) return PyErr_NoMemory();
    }
    PyObject *result = NULL, *keep = NULL;
    for (Py_ssize_t i = 0; i < nargs; i++)
        if (tag_ref(args[i], &refs[i], &keep) < 0) goto done;
    bulk_job job = {BULK_TAGS, refs, (uint32_t)nargs, NULL, 0, NULL, 0};
    long long n = run_bulk(self, &job);
    if (n >= 0) result = PyLong_FromLongLong(n);
done:
    if (refs != inline_refs) PyMem_Free(refs);
    Py_XDECREF(keep);
    return result;
}

static PyObject *lc_invalidate_prefix(LocalCacheObject *self, PyObject *prefix) {
    PyObject *owned = NULL;
    Py_hash_t h;
    if (!PyUnicode_Check(prefix) && !PyBytes_Check(prefix)) {
        PyErr_Format(PyExc_TypeError, "prefix must be str or bytes, not %.100s", Py_TYPE(prefix)->tp_name);
        return NULL;
    }
    prefix = prepare_key(prefix, &h, &owned);
    if (prefix == NULL) return NULL;
    bulk_job job = {BULK_PREFIX, NULL, 0, prefix, 0, NULL, 0};
    long long n = run_bulk(self, &job);
    Py_XDECREF(owned);
    return n < 0 ? NULL : PyLong_FromLongLong(n);
}

static PyObject *lc_clear(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    bulk_job job = {BULK_CLEAR, NULL, 0, NULL, 0, NULL, 0};
    long long n = run_bulk(self, &job);
    return n < 0 ? NULL : PyLong_FromLongLong(n);
}

static PyObject *lc_expire(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    bulk_job job = {BULK_EXPIRE, NULL, 0, NULL, 0, NULL, 0};
    long long n = run_bulk(self, &job);
    return n < 0 ? NULL : PyLong_FromLongLong(n);
}

static Py_ssize_t lc_length(LocalCacheObject *self) {
    bulk_job job = {BULK_EXPIRE, NULL, 0, NULL, 0, NULL, 0};
    if (run_bulk(self, &job) < 0) return -1;
    lc_enter(self);
    return (Py_ssize_t)self->store.count;
}

/* ---- introspection --------------------------------------------------------------- */

static PyObject *lc_keys(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    lc_enter(self);
    tc_store *s = &self->store;
    /* collect with the raw allocator: allocating Python objects here could run the GC
     * and, through finalizers, code that changes this cache */
    PyObject **keys = s->count ? PyMem_RawMalloc((size_t)s->count * sizeof(PyObject *)) : NULL;
    if (s->count && keys == NULL) return PyErr_NoMemory();
    Py_ssize_t n = 0;
    int64_t now = tc_now();
    for (uint32_t i = 0; i < s->hwm; i++) {
        tc_entry *e = &s->slab[i];
        if (e->key && (e->deadline == TC_NO_DEADLINE || e->deadline > now)) {
            keys[n++] = Py_NewRef((PyObject *)e->key);
        }
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(keys[i]);
    } else {
        for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(list, i, keys[i]);
    }
    PyMem_RawFree(keys);
    return list;
}

static int dict_set_u64(PyObject *d, const char *k, uint64_t v) {
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (o == NULL) return -1;
    int r = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return r;
}

static PyObject *lc_stats(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    lc_enter(self);
    tc_store *s = &self->store;
    tc_counters c = s->c;
    uint64_t entries = s->count, bytes = s->bytes, peak = s->peak_bytes, tags = s->tags.count;
    uint64_t overhead = tc_store_overhead(s);
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    if (dict_set_u64(d, "hits", c.hits) < 0 || dict_set_u64(d, "misses", c.misses) < 0 ||
        dict_set_u64(d, "sets", c.sets) < 0 || dict_set_u64(d, "deletes", c.deletes) < 0 ||
        dict_set_u64(d, "evictions", c.evictions) < 0 || dict_set_u64(d, "evictions_bytes", c.evictions_bytes) < 0 ||
        dict_set_u64(d, "expirations", c.expirations) < 0 || dict_set_u64(d, "invalidations", c.invalidations) < 0 ||
        dict_set_u64(d, "rejected", c.rejected) < 0 || dict_set_u64(d, "entries", entries) < 0 ||
        dict_set_u64(d, "bytes", bytes) < 0 || dict_set_u64(d, "peak_bytes", peak) < 0 ||
        dict_set_u64(d, "max_entries", s->max_entries) < 0 || dict_set_u64(d, "tags", tags) < 0 ||
        dict_set_u64(d, "overhead_bytes", overhead) < 0)
        goto error;
    if (s->max_bytes) {
        if (dict_set_u64(d, "max_bytes", s->max_bytes) < 0) goto error;
    } else if (PyDict_SetItemString(d, "max_bytes", Py_None) < 0) {
        goto error;
    }
    return d;
error:
    Py_DECREF(d);
    return NULL;
}

/* ---- the invalidation fence (fence.c) ----------------------------------------------
 *
 * TieredCache's listener hands its pub/sub socket to _watch(); readers check the fence
 * (the decorated functions' C path, TieredCache.get via `_pending`) and, when it is
 * raised, apply the waiting invalidations before trusting L1 (_Core.fence). */

int tc_localcache_pending(PyObject *cache) { return tc_fence_probe(&((LocalCacheObject *)cache)->fence); }

/* _watch(fd): raise the fence whenever fd has data (a watcher thread); None stops it. */
static PyObject *lc_watch(LocalCacheObject *self, PyObject *arg) {
    int fd = -1;
    if (arg != Py_None) {
        fd = PyObject_AsFileDescriptor(arg);
        if (fd < 0) return NULL;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fd < 0) tc_fence_unwatch(&self->fence);
    else rc = tc_fence_watch(&self->fence, fd);
    Py_END_ALLOW_THREADS
    if (rc < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* _wait_readable(fd, timeout): wait without the GIL until fd is readable (raising the
 * fence first) or timeout seconds pass. True if readable. */
static PyObject *lc_wait_readable(LocalCacheObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_wait_readable(fd, timeout) takes 2 arguments");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[0]);
    if (fd < 0) return NULL;
    double timeout = PyFloat_AsDouble(args[1]);
    if (timeout == -1.0 && PyErr_Occurred()) return NULL;
    if (!(timeout >= 0) || timeout > 3600) {
        PyErr_Format(PyExc_ValueError, "timeout must be between 0 and 3600 seconds, got %R", args[1]);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = tc_fence_wait_readable(&self->fence, fd, (int)(timeout * 1000));
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        if (errno == EINTR) { /* a signal: let its handler run, report "not readable" */
            if (PyErr_CheckSignals() < 0) return NULL;
            Py_RETURN_FALSE;
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong(rc > 0);
}

/* _take_pending(): lower the fence; True if it was raised. */
static PyObject *lc_take_pending(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(tc_fence_take(&self->fence));
}

/* _raise_pending(): raise the fence (before reading the socket for something else). */
static PyObject *lc_raise_pending(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    tc_fence_raise(&self->fence);
    Py_RETURN_NONE;
}

static PyObject *lc_get_pending(LocalCacheObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(tc_fence_probe(&self->fence));
}

static PyObject *lc_selfcheck(LocalCacheObject *self, PyObject *Py_UNUSED(ignored)) {
    lc_enter(self);
    const char *problem = tc_store_check(&self->store);
    if (problem) {
        PyErr_Format(PyExc_AssertionError, "LocalCache structure corrupt: %s", problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *lc_repr(LocalCacheObject *self) {
    return PyUnicode_FromFormat("<tieredcache.LocalCache entries=%u max_entries=%u>", self->store.count,
                                self->store.max_entries);
}

static PyObject *lc_get_max_entries(LocalCacheObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLong(self->store.max_entries);
}

static PyObject *lc_get_max_bytes(LocalCacheObject *self, void *Py_UNUSED(c)) {
    if (self->store.max_bytes == 0) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(self->store.max_bytes);
}

static PyObject *lc_get_default_ttl(LocalCacheObject *self, void *Py_UNUSED(c)) {
    if (self->default_ttl == TC_NO_DEADLINE) Py_RETURN_NONE;
    return PyFloat_FromDouble((double)self->default_ttl / 1e9);
}

/* ---- type ------------------------------------------------------------------------ */

static PyMethodDef lc_methods[] = {
    {"get", (PyCFunction)(void (*)(void))lc_get, METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nThe value cached for key, or default. Counts a hit or a miss."},
    {"set", (PyCFunction)(void (*)(void))lc_set, METH_FASTCALL | METH_KEYWORDS,
     "set($self, key, value, ttl=None, tags=(), size=None)\n--\n\n"
     "Cache value under key for ttl seconds (None: default_ttl) with the given tags.\n"
     "Returns False, and removes any previous value, if the value's charge exceeds\n"
     "max_bytes; True when stored."},
    {"delete", (PyCFunction)lc_delete, METH_O, "delete($self, key, /)\n--\n\nRemove key; True if it was cached."},
    {"get_many", (PyCFunction)lc_get_many, METH_O,
     "get_many($self, keys, /)\n--\n\nA dict of the keys that are cached, with their values."},
    {"set_many", (PyCFunction)(void (*)(void))lc_set_many, METH_FASTCALL | METH_KEYWORDS,
     "set_many($self, mapping, ttl=None, tags=())\n--\n\nCache every item of mapping; returns how many were stored."},
    {"ttl", (PyCFunction)lc_ttl, METH_O,
     "ttl($self, key, /)\n--\n\nSeconds left before key expires, None if it never does; KeyError if absent."},
    {"touch", (PyCFunction)(void (*)(void))lc_touch, METH_FASTCALL | METH_KEYWORDS,
     "touch($self, key, ttl)\n--\n\nGive key a new TTL from now (None: no expiry); False if absent."},
    {"invalidate_tags", (PyCFunction)(void (*)(void))lc_invalidate_tags, METH_FASTCALL,
     "invalidate_tags($self, /, *tags)\n--\n\nRemove every entry carrying any of the tags; returns how many."},
    {"invalidate_prefix", (PyCFunction)lc_invalidate_prefix, METH_O,
     "invalidate_prefix($self, prefix, /)\n--\n\nRemove every key (of prefix's type) starting with prefix; returns how many."},
    {"clear", (PyCFunction)lc_clear, METH_NOARGS, "clear($self, /)\n--\n\nRemove every entry; returns how many."},
    {"expire", (PyCFunction)lc_expire, METH_NOARGS,
     "expire($self, /)\n--\n\nReclaim every expired entry now; returns how many."},
    {"stats", (PyCFunction)lc_stats, METH_NOARGS, "stats($self, /)\n--\n\nCounters and sizes, as a new dict."},
    {"keys", (PyCFunction)lc_keys, METH_NOARGS, "keys($self, /)\n--\n\nA list of the live keys."},
    {"_wait_readable", (PyCFunction)(void (*)(void))lc_wait_readable, METH_FASTCALL,
     "_wait_readable(fd, timeout, /)\n--\n\nWait without the GIL for fd to be readable, raising the "
     "invalidation fence when it is (TieredCache's listener)."},
    {"_watch", (PyCFunction)lc_watch, METH_O,
     "_watch(fd, /)\n--\n\nRaise the invalidation fence whenever fd has data (None: stop watching)."},
    {"_take_pending", (PyCFunction)lc_take_pending, METH_NOARGS,
     "_take_pending()\n--\n\nLower the invalidation fence; True if it was raised."},
    {"_raise_pending", (PyCFunction)lc_raise_pending, METH_NOARGS,
     "_raise_pending()\n--\n\nRaise the invalidation fence: readers apply pending messages first."},
    {"_selfcheck", (PyCFunction)lc_selfcheck, METH_NOARGS,
     "_selfcheck($self, /)\n--\n\nCheck table, wheel, tag index and policy; AssertionError if corrupt."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lc_getset[] = {
    {"max_entries", (getter)lc_get_max_entries, NULL, "The bound on the number of entries.", NULL},
    {"max_bytes", (getter)lc_get_max_bytes, NULL, "The bound on charged bytes, or None.", NULL},
    {"default_ttl", (getter)lc_get_default_ttl, NULL, "The TTL of set() without ttl, or None.", NULL},
    {"_pending", (getter)lc_get_pending, NULL,
     "Whether invalidations wait to be applied (the fence is raised, or the watched socket has data).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef lc_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(LocalCacheObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(lc_doc,
             "LocalCache(max_entries=100000, max_bytes=None, default_ttl=None)\n--\n\n"
             "A bounded in-process cache with TTLs, tags and W-TinyLFU eviction.\n\n"
             "Keys are str or bytes; values are stored by reference (a cached mutable\n"
             "object is shared by every reader). See docs/local-cache.md.");

static PyType_Slot lc_slots[] = {
    {Py_tp_doc, (void *)lc_doc},
    {Py_tp_new, lc_new},
    {Py_tp_dealloc, lc_dealloc},
    {Py_tp_traverse, lc_traverse},
    {Py_tp_clear, lc_clear_refs},
    {Py_tp_repr, lc_repr},
    {Py_tp_methods, lc_methods},
    {Py_tp_getset, lc_getset},
    {Py_tp_members, lc_members},
    {Py_mp_length, lc_length},
    {Py_mp_subscript, lc_getitem},
    {Py_mp_ass_subscript, lc_ass_subscript},
    {Py_sq_contains, lc_contains},
    {0, NULL},
};

PyType_Spec tc_localcache_spec = {
    .name = "tieredcache.LocalCache",
    .basicsize = sizeof(LocalCacheObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = lc_slots,
};
