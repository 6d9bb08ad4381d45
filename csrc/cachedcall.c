/*
 * cachedcall.c -- the Python type CachedCall: the hit path of a decorated function.
 *
 * STRUCTURE
 *   A CachedCall wraps one function decorated with @cache.cached (the Python side,
 *   _decorators.py, builds it). Calling it:
 *
 *     1. binds the call's arguments to the function's parameters (positional, then
 *        keywords by name, then defaults) into a small array, as CPython would;
 *     2. writes the L1 key into a stack buffer: the bound LocalCache's namespace prefix,
 *        then either  name "(" enc(a1) "," enc(a2) ... ")"  or a key template's literal
 *        parts and argument values (the same text _keys.py builds; see there);
 *     3. looks the key up in the bound LocalCache; a hit returns the value. While the
 *        cache's invalidation fence is raised (localcache.c), the call goes to the slow
 *        path, which applies the waiting invalidations before reading L1.
 *
 *   Anything else -- an argument type this file does not encode (exact str, int, float,
 *   bool, None, bytes, date/time types and Decimal are), a key longer than the buffer, a call
 *   that does not bind (which must raise the TypeError Python would), no cache bound
 *   yet -- and every miss calls `miss(l1key_or_None, *args, **kwargs)`, the Python slow
 *   path, which owns reading L2, calling the function and storing the result.
 *   `_probe(*args, **kwargs)` does 1-3 and returns the `missing` sentinel instead of
 *   calling `miss` (the async wrapper awaits the slow path itself).
 *
 * INVARIANTS
 *   - The key text produced here equals _keys.py's for every argument it accepts; when
 *     unsure it defers (never a different key for the same call).
 *   - The bound cache is held with a new reference for the whole lookup: `_bind` may
 *     swap it from another thread while a lookup waits on the store lock.
 *
 * COUNTERS
 *   hits (C path), and, while monitoring is on, one hit in TC_SAMPLE_EVERY timed with
 *   CLOCK_MONOTONIC into a fixed-bucket histogram (sampled, sampled_ns, max_ns, hist),
 *   for the per-function report at ~1 ns per call on average.
 *
 * COMPLEXITY
 *   O(parameters + key length) per call, no allocation beyond the key string.
 */
#include "cachedcall.h"

#include <structmember.h>
#include <time.h>

#include "common.h"
#include "localcache.h"

#define TC_MAX_PARAMS 16
#define TC_KEYBUF 512
#define TC_MAX_ARGTEXT 250 /* _keys.MAX_KEY_TEXT */
#define TC_SAMPLE_EVERY 16

/* Latency buckets of sampled hits: upper bounds in ns, then +Inf. Equal to
 * tieredcache._metrics.BOUNDS_NS (a test checks). */
static const uint64_t TC_HIST_BOUNDS_NS[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
    1000000000, 2500000000u, 5000000000u, 10000000000u,
};
#define TC_HIST_N ((int)(sizeof TC_HIST_BOUNDS_NS / sizeof TC_HIST_BOUNDS_NS[0]) + 1)

enum { MODE_DEFER = 0, MODE_ARGS = 1, MODE_TEMPLATE = 2 };
enum { KIND_POSONLY = 0, KIND_POS_OR_KW = 1, KIND_KWONLY = 3 };

typedef struct {
    char *lit;        /* ASCII literal (owned), or NULL for an argument */
    Py_ssize_t len;
    int idx;          /* parameter index when lit == NULL */
} tc_part;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *func;
    PyObject *miss;
    PyObject *name;
    PyObject *missing;
    PyObject *l1;          /* LocalCache or NULL */
    PyObject *l1prefix;    /* str or NULL */
    char *prefix;          /* ASCII: l1prefix + name + "(" (MODE_ARGS) or l1prefix */
    Py_ssize_t prefix_len;
    int mode;
    int armed;             /* l1 bound and prefix ASCII */
    Py_ssize_t nparams, npositional;
    PyObject *pnames[TC_MAX_PARAMS];
    PyObject *defaults[TC_MAX_PARAMS]; /* NULL: none */
    unsigned char kinds[TC_MAX_PARAMS], included[TC_MAX_PARAMS];
    tc_part *parts;
    Py_ssize_t nparts;
    uint64_t hits, sampled, sampled_ns, max_ns;
    uint64_t hist[TC_HIST_N];
    int monitor;           /* sample hit latencies (CACHE_MONITORING_ENABLED) */
    PyObject *scratch;     /* the last key built, reused when nobody else holds it */
    PyObject *dict;
    PyObject *weakreflist;
} CachedCallObject;

static PyTypeObject *localcache_type; /* set by tc_cachedcall_set_localcache_type */

void tc_cachedcall_set_localcache_type(PyTypeObject *t) { localcache_type = t; }

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- key text ----------------------------------------------------------------------- */

/* The key is written as ASCII bytes into a stack buffer. A piece of text that is not
 * ASCII (the repr of "zoë") is kept as a str object instead: the bytes written so far
 * become a str, both go to `pieces`, and the key is joined at the end. `chars` counts
 * characters either way (for the length limit shared with _keys.py). */
typedef struct {
    char *p, *end, *start;
    PyObject *pieces; /* list or NULL while everything is ASCII */
    Py_ssize_t chars;
} kbuf;

#define PUT_DEFER (-1)  /* not encodable here: the Python path */
#define PUT_ERROR (-2)  /* exception set */

TC_INLINE int put(kbuf *b, const char *s, Py_ssize_t n) {
    if (TC_UNLIKELY(b->end - b->p < n)) return PUT_DEFER;
    memcpy(b->p, s, (size_t)n);
    b->p += n;
    b->chars += n;
    return 0;
}

/* Append a str: copied when ASCII, else kept as an object. */
static int put_str(kbuf *b, PyObject *s) {
    if (PyUnicode_IS_ASCII(s)) return put(b, (const char *)PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s));
    if (b->pieces == NULL) {
        b->pieces = PyList_New(0);
        if (b->pieces == NULL) return PUT_ERROR;
    }
    if (b->p > b->start) {
        PyObject *ascii = PyUnicode_FromStringAndSize(b->start, b->p - b->start);
        if (ascii == NULL) return PUT_ERROR;
        int rc = PyList_Append(b->pieces, ascii);
        Py_DECREF(ascii);
        if (rc < 0) return PUT_ERROR;
        b->p = b->start; /* the buffer restarts empty (capacity is per stretch; fine) */
    }
    if (PyList_Append(b->pieces, s) < 0) return PUT_ERROR;
    b->chars += PyUnicode_GET_LENGTH(s);
    return 0;
}

/* Append text produced by a Python call (repr, format); `made` is a new reference. */
static int put_made(kbuf *b, PyObject *made) {
    if (made == NULL) return PUT_ERROR;
    int rc = PyUnicode_Check(made) ? put_str(b, made) : PUT_DEFER;
    Py_DECREF(made);
    return rc;
}

/* Decimal digits of |x| written backwards ending at `end`; returns the first digit. */
static char *write_digits(char *end, unsigned long long u) {
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        end -= 2;
        memcpy(end, pairs + 2 * r, 2);
    }
    if (u >= 10) {
        end -= 2;
        memcpy(end, pairs + 2 * u, 2);
    } else {
        *--end = (char)('0' + u);
    }
    return end;
}

static int put_long(kbuf *b, PyObject *v) {
    long long x;
#if PY_VERSION_HEX < 0x030C0000
    Py_ssize_t size = Py_SIZE(v);
    if (size >= -1 && size <= 1) { /* one 30-bit digit (or zero): no call */
        x = size * (long long)((PyLongObject *)v)->ob_digit[0];
    } else
#endif
    {
        int overflow;
        x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) return put_made(b, PyObject_Repr(v));
        if (x == -1 && PyErr_Occurred()) return PUT_ERROR;
    }
    char tmp[24], *end = tmp + sizeof tmp;
    char *q = write_digits(end, x < 0 ? 0ull - (unsigned long long)x : (unsigned long long)x);
    if (x < 0) *--q = '-';
    return put(b, q, end - q);
}

static int put_float(kbuf *b, PyObject *v) {
    char *s = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) return PUT_ERROR;
    int rc = put(b, s, (Py_ssize_t)strlen(s));
    PyMem_Free(s);
    return rc;
}

/* repr() of an exact str: plain printable ASCII without quote or backslash is written
 * directly between single quotes; anything else asks repr() itself. */
static int put_str_repr(kbuf *b, PyObject *s) {
    if (PyUnicode_IS_ASCII(s)) {
        const unsigned char *d = PyUnicode_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), i;
        for (i = 0; i < n; i++) {
            unsigned char c = d[i];
            if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\') break;
        }
        if (i == n) {
            if (b->end - b->p < n + 2) return PUT_DEFER;
            *b->p++ = '\'';
            memcpy(b->p, d, (size_t)n);
            b->p += n;
            *b->p++ = '\'';
            b->chars += n + 2;
            return 0;
        }
    }
    return put_made(b, PyObject_Repr(s));
}

/* Exact types of the standard library whose key text is their repr (see _keys.py). */
static int is_repr_type(PyTypeObject *t) {
    const char *n = t->tp_name;
    return strcmp(n, "datetime.date") == 0 || strcmp(n, "datetime.datetime") == 0 ||
           strcmp(n, "datetime.time") == 0 || strcmp(n, "datetime.timedelta") == 0 ||
           strcmp(n, "decimal.Decimal") == 0;
}

/* The _keys encoding of one argument. */
static int put_arg(kbuf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) return put_str_repr(b, v);
    if (t == &PyLong_Type) return put_long(b, v);
    if (v == Py_None) return put(b, "None", 4);
    if (v == Py_True) return put(b, "True", 4);
    if (v == Py_False) return put(b, "False", 5);
    if (t == &PyFloat_Type) return put_float(b, v);
    if (t == &PyBytes_Type || is_repr_type(t)) return put_made(b, PyObject_Repr(v));
    return PUT_DEFER;
}

/* format(v, "") of one template argument (templates check nothing else for these). */
static int put_field(kbuf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type) return put_str(b, v);
    if (t == &PyLong_Type) return put_long(b, v);
    if (v == Py_None) return put(b, "None", 4);
    if (v == Py_True) return put(b, "True", 4);
    if (v == Py_False) return put(b, "False", 5);
    if (t == &PyFloat_Type) return put_float(b, v);
    if (t == &PyBytes_Type || is_repr_type(t)) return put_made(b, PyObject_Format(v, NULL));
    return PUT_DEFER;
}

/* Bind the call into vals[] (borrowed). -1: defer (Python raises whatever applies). */
static int bind_args(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                     PyObject **vals) {
    Py_ssize_t n = self->nparams;
    if (nargs > self->npositional) return -1;
    for (Py_ssize_t i = 0; i < n; i++) vals[i] = i < nargs ? args[i] : NULL;
    if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nk; k++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
            Py_ssize_t j;
            for (j = 0; j < n; j++)
                if (self->pnames[j] == kw) break;
            if (j == n) {
                for (j = 0; j < n; j++)
                    if (PyUnicode_Compare(self->pnames[j], kw) == 0) break;
                if (PyErr_Occurred()) {
                    PyErr_Clear();
                    return -1;
                }
            }
            if (j == n || self->kinds[j] == KIND_POSONLY || vals[j] != NULL) return -1;
            vals[j] = args[nargs + k];
        }
    }
    for (Py_ssize_t i = nargs; i < n; i++) {
        if (vals[i] == NULL) {
            if (self->defaults[i] == NULL) return -1;
            vals[i] = self->defaults[i];
        }
    }
    return 0;
}

/* The scratch key, to be rewritten in place, when only this object holds it and it has
 * `len` ASCII characters (a new reference), else NULL. Writing into a str is safe only
 * while no one else can see it: refcount 1 (ours), not interned; its cached hash is
 * reset. This saves an allocation and a free per call when successive keys of a
 * function have the same length (the common case: ids of one width). */
static PyObject *reuse_scratch(CachedCallObject *self, Py_ssize_t len) {
    PyObject *s = self->scratch;
    if (s == NULL || Py_REFCNT(s) != 1 || PyUnicode_GET_LENGTH(s) != len || !PyUnicode_IS_COMPACT_ASCII(s) ||
        PyUnicode_CHECK_INTERNED(s))
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (((PyASCIIObject *)s)->wstr != NULL) return NULL; /* a wchar_t copy would go stale */
#endif
    ((PyASCIIObject *)s)->hash = -1;
    return Py_NewRef(s);
}

/* The L1 key of this call as a new str, or NULL: with an exception set on an error,
 * without one to defer to the Python path. */
static PyObject *build_key(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *vals[TC_MAX_PARAMS];
    char buf[TC_KEYBUF];
    kbuf b = {buf, buf + sizeof buf, buf, NULL, 0};
    PyObject *key = NULL;
    int rc = 0;
    if (!self->armed || bind_args(self, args, nargs, kwnames, vals) < 0) return NULL;
    if ((rc = put(&b, self->prefix, self->prefix_len)) < 0) goto done;
    if (self->mode == MODE_ARGS) {
        Py_ssize_t start = b.chars;
        int first = 1;
        for (Py_ssize_t i = 0; i < self->nparams; i++) {
            if (!self->included[i]) continue;
            if (!first && (rc = put(&b, ",", 1)) < 0) goto done;
            first = 0;
            if ((rc = put_arg(&b, vals[i])) < 0) goto done;
        }
        if (b.chars - start > TC_MAX_ARGTEXT) { /* hashed by the Python side */
            rc = PUT_DEFER;
            goto done;
        }
        if ((rc = put(&b, ")", 1)) < 0) goto done;
    } else {
        for (Py_ssize_t i = 0; i < self->nparts; i++) {
            tc_part *pt = &self->parts[i];
            rc = pt->lit != NULL ? put(&b, pt->lit, pt->len) : put_field(&b, vals[pt->idx]);
            if (rc < 0) goto done;
        }
    }
    Py_ssize_t len = b.p - b.start;
    if (b.pieces == NULL) {
        key = reuse_scratch(self, len);
        if (key == NULL) {
            key = PyUnicode_New(len, 127);
            if (key == NULL) goto done;
            Py_XSETREF(self->scratch, Py_NewRef(key));
        }
        memcpy(PyUnicode_DATA(key), buf, (size_t)len);
    } else {
        PyObject *tail = PyUnicode_FromStringAndSize(b.start, len);
        if (tail != NULL && PyList_Append(b.pieces, tail) == 0) {
            PyObject *empty = PyUnicode_FromStringAndSize(NULL, 0);
            if (empty != NULL) key = PyUnicode_Join(empty, b.pieces);
            Py_XDECREF(empty);
        }
        Py_XDECREF(tail);
    }
done:
    Py_XDECREF(b.pieces);
    if (rc == PUT_DEFER) PyErr_Clear(); /* (none is set; defensive) */
    return key;
}

/* Look up the call. Returns a new reference to the value; `missing` (new ref) on a
 * miss with *key set (new ref, may be NULL when deferred); NULL with an exception. */
static PyObject *lookup_call(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                             PyObject **keyout) {
    *keyout = NULL;
    if (!self->armed) return Py_NewRef(self->missing);
    PyObject *key = build_key(self, args, nargs, kwnames);
    if (key == NULL) {
        if (PyErr_Occurred()) return NULL;
        return Py_NewRef(self->missing);
    }
    if (TC_UNLIKELY(tc_localcache_pending(self->l1))) { /* invalidations to apply first */
        *keyout = key;
        return Py_NewRef(self->missing);
    }
    PyObject *l1 = Py_NewRef(self->l1);
    PyObject *value = tc_localcache_get(l1, key, self->missing);
    Py_DECREF(l1);
    if (value == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (value == self->missing) *keyout = key;
    else Py_DECREF(key);
    return value;
}

static PyObject *call_miss(CachedCallObject *self, PyObject *key, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    Py_ssize_t total = nargs + nkw;
    PyObject *small[1 + 8];
    PyObject **stack = small;
    if (total + 1 > (Py_ssize_t)(sizeof small / sizeof small[0])) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL) return PyErr_NoMemory();
    }
    stack[0] = key ? key : Py_None;
    for (Py_ssize_t i = 0; i < total; i++) stack[1 + i] = args[i];
    PyObject *r = PyObject_Vectorcall(self->miss, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) PyMem_Free(stack);
    return r;
}

static void record_sample(CachedCallObject *self, uint64_t ns) {
    int i = 0;
    while (i < TC_HIST_N - 1 && ns > TC_HIST_BOUNDS_NS[i]) i++;
    self->hist[i]++;
    self->sampled++;
    self->sampled_ns += ns;
    if (ns > self->max_ns) self->max_ns = ns;
}

static PyObject *cc_vectorcall(CachedCallObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    uint64_t t0 = 0;
    int timed = self->monitor && (self->hits % TC_SAMPLE_EVERY) == 0;
    if (timed) t0 = now_ns();
    PyObject *key;
    PyObject *value = lookup_call(self, args, nargs, kwnames, &key);
    if (value == NULL) return NULL;
    if (TC_LIKELY(value != self->missing)) {
        self->hits++;
        if (timed) record_sample(self, now_ns() - t0);
        return value;
    }
    Py_DECREF(value);
    PyObject *r = call_miss(self, key, args, nargs, kwnames);
    Py_XDECREF(key);
    return r;
}

static PyObject *cc_probe(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    uint64_t t0 = 0;
    int timed = self->monitor && (self->hits % TC_SAMPLE_EVERY) == 0;
    if (timed) t0 = now_ns();
    PyObject *key;
    PyObject *value = lookup_call(self, args, nargs, kwnames, &key);
    Py_XDECREF(key);
    if (value != NULL && value != self->missing) {
        self->hits++;
        if (timed) record_sample(self, now_ns() - t0);
    }
    return value;
}

static PyObject *cc_key(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *key = build_key(self, args, nargs, kwnames);
    if (key == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return key;
}

/* ---- construction ------------------------------------------------------------------- */

static void free_parts(CachedCallObject *self) {
    if (self->parts) {
        for (Py_ssize_t i = 0; i < self->nparts; i++) PyMem_Free(self->parts[i].lit);
        PyMem_Free(self->parts);
        self->parts = NULL;
    }
    self->nparts = 0;
}

static int parse_params(CachedCallObject *self, PyObject *params) {
    if (params == Py_None) {
        self->mode = MODE_DEFER;
        return 0;
    }
    if (!PyTuple_Check(params)) {
        PyErr_SetString(PyExc_TypeError, "params must be a tuple or None");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(params);
    if (n > TC_MAX_PARAMS) {
        self->mode = MODE_DEFER;
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(params, i);
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(p, 0)) ||
            !PyLong_Check(PyTuple_GET_ITEM(p, 1))) {
            PyErr_SetString(PyExc_TypeError, "params must hold (name, kind, default, included) tuples");
            return -1;
        }
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(p, 1));
        if (kind != KIND_POSONLY && kind != KIND_POS_OR_KW && kind != KIND_KWONLY) {
            PyErr_Format(PyExc_ValueError, "params: unsupported parameter kind %ld", kind);
            return -1;
        }
        int inc = PyObject_IsTrue(PyTuple_GET_ITEM(p, 3));
        if (inc < 0) return -1;
        PyObject *name = PyTuple_GET_ITEM(p, 0);
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        self->pnames[i] = name;
        PyObject *d = PyTuple_GET_ITEM(p, 2);
        self->defaults[i] = d == self->missing ? NULL : Py_NewRef(d);
        self->kinds[i] = (unsigned char)kind;
        self->included[i] = (unsigned char)inc;
        self->nparams = i + 1;
        if (kind != KIND_KWONLY) self->npositional = i + 1;
    }
    self->mode = MODE_ARGS;
    return 0;
}

static int parse_template(CachedCallObject *self, PyObject *template) {
    if (template == Py_None) return 0;
    if (!PyTuple_Check(template)) {
        PyErr_SetString(PyExc_TypeError, "template must be a tuple or None");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(template);
    if (n == 0 || self->mode == MODE_DEFER) {
        self->mode = MODE_DEFER;
        return 0;
    }
    self->parts = PyMem_Calloc((size_t)n, sizeof(tc_part));
    if (self->parts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->nparts = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyTuple_GET_ITEM(template, i);
        if (PyLong_Check(it)) {
            long idx = PyLong_AsLong(it);
            if (idx < 0 || idx >= self->nparams) {
                PyErr_SetString(PyExc_ValueError, "template: argument index out of range");
                return -1;
            }
            self->parts[i].idx = (int)idx;
        } else if (PyUnicode_Check(it)) {
            if (!PyUnicode_IS_ASCII(it)) { /* keys must stay ASCII here: defer */
                self->mode = MODE_DEFER;
                return 0;
            }
            Py_ssize_t len = PyUnicode_GET_LENGTH(it);
            self->parts[i].lit = PyMem_Malloc((size_t)len + 1);
            if (self->parts[i].lit == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(self->parts[i].lit, PyUnicode_DATA(it), (size_t)len);
            self->parts[i].len = len;
        } else {
            PyErr_SetString(PyExc_TypeError, "template parts must be str or int");
            return -1;
        }
    }
    self->mode = MODE_TEMPLATE;
    return 0;
}

static PyObject *cc_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"func", "miss", "name", "params", "template", "missing", NULL};
    PyObject *func, *miss, *name, *params, *template, *missing;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOUOOO:CachedCall", kwlist, &func, &miss, &name, &params,
                                     &template, &missing))
        return NULL;
    if (!PyCallable_Check(func) || !PyCallable_Check(miss)) {
        PyErr_SetString(PyExc_TypeError, "func and miss must be callable");
        return NULL;
    }
    CachedCallObject *self = (CachedCallObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->vectorcall = (vectorcallfunc)cc_vectorcall;
    self->func = Py_NewRef(func);
    self->miss = Py_NewRef(miss);
    self->name = Py_NewRef(name);
    self->missing = Py_NewRef(missing);
    self->monitor = 1;
    if (parse_params(self, params) < 0 || parse_template(self, template) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* _bind(l1, l1prefix): arm the fast path on a LocalCache (None disarms). */
static PyObject *cc_bind(CachedCallObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_bind(l1, prefix) takes 2 arguments");
        return NULL;
    }
    PyObject *l1 = args[0], *pfx = args[1];
    if (l1 != Py_None && (localcache_type == NULL || !PyObject_TypeCheck(l1, localcache_type))) {
        PyErr_Format(PyExc_TypeError, "l1 must be a LocalCache or None, not %.100s", Py_TYPE(l1)->tp_name);
        return NULL;
    }
    if (!PyUnicode_Check(pfx)) {
        PyErr_Format(PyExc_TypeError, "prefix must be str, not %.100s", Py_TYPE(pfx)->tp_name);
        return NULL;
    }
    char *prefix = NULL;
    Py_ssize_t plen = 0;
    int armed = 0;
    if (l1 != Py_None && self->mode != MODE_DEFER && PyUnicode_IS_ASCII(pfx) &&
        (self->mode == MODE_TEMPLATE || PyUnicode_IS_ASCII(self->name))) {
        Py_ssize_t a = PyUnicode_GET_LENGTH(pfx);
        Py_ssize_t nn = self->mode == MODE_ARGS ? PyUnicode_GET_LENGTH(self->name) + 1 : 0;
        plen = a + nn;
        prefix = PyMem_Malloc((size_t)plen + 1);
        if (prefix == NULL) return PyErr_NoMemory();
        memcpy(prefix, PyUnicode_DATA(pfx), (size_t)a);
        if (self->mode == MODE_ARGS) {
            memcpy(prefix + a, PyUnicode_DATA(self->name), (size_t)(nn - 1));
            prefix[plen - 1] = '(';
        }
        armed = 1;
    }
    PyObject *old_l1 = self->l1, *old_pfx = self->l1prefix;
    char *old_prefix = self->prefix;
    self->l1 = l1 == Py_None ? NULL : Py_NewRef(l1);
    self->l1prefix = Py_NewRef(pfx);
    self->prefix = prefix;
    self->prefix_len = plen;
    self->armed = armed;
    PyMem_Free(old_prefix);
    Py_XDECREF(old_l1);
    Py_XDECREF(old_pfx);
    Py_RETURN_NONE;
}

static PyObject *cc_counters(CachedCallObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *hist = PyTuple_New(TC_HIST_N);
    if (hist == NULL) return NULL;
    for (int i = 0; i < TC_HIST_N; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(self->hist[i]);
        if (n == NULL) {
            Py_DECREF(hist);
            return NULL;
        }
        PyTuple_SET_ITEM(hist, i, n);
    }
    return Py_BuildValue("(KKKKN)", (unsigned long long)self->hits, (unsigned long long)self->sampled,
                         (unsigned long long)self->sampled_ns, (unsigned long long)self->max_ns, hist);
}

static PyObject *cc_reset_counters(CachedCallObject *self, PyObject *Py_UNUSED(ignored)) {
    self->hits = self->sampled = self->sampled_ns = self->max_ns = 0;
    memset(self->hist, 0, sizeof self->hist);
    Py_RETURN_NONE;
}

/* _monitor(flag): turn the sampling of hit latencies on or off. */
static PyObject *cc_monitor(CachedCallObject *self, PyObject *flag) {
    int on = PyObject_IsTrue(flag);
    if (on < 0) return NULL;
    self->monitor = on;
    Py_RETURN_NONE;
}

static PyObject *cc_descr_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type)) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *cc_repr(CachedCallObject *self) {
    return PyUnicode_FromFormat("<cached function %U>", self->name);
}

static PyObject *cc_get_armed(CachedCallObject *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->armed); }

/* ---- GC ----------------------------------------------------------------------------- */

static int cc_traverse(CachedCallObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->func);
    Py_VISIT(self->miss);
    Py_VISIT(self->l1);
    Py_VISIT(self->dict);
    for (Py_ssize_t i = 0; i < self->nparams; i++) Py_VISIT(self->defaults[i]);
    return 0;
}

static int cc_clear(CachedCallObject *self) {
    Py_CLEAR(self->func);
    Py_CLEAR(self->miss);
    Py_CLEAR(self->l1);
    Py_CLEAR(self->dict);
    self->armed = 0;
    for (Py_ssize_t i = 0; i < self->nparams; i++) Py_CLEAR(self->defaults[i]);
    return 0;
}

static void cc_dealloc(CachedCallObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    cc_clear(self);
    Py_CLEAR(self->name);
    Py_CLEAR(self->missing);
    Py_CLEAR(self->l1prefix);
    Py_CLEAR(self->scratch);
    for (Py_ssize_t i = 0; i < self->nparams; i++) Py_CLEAR(self->pnames[i]);
    PyMem_Free(self->prefix);
    free_parts(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef cc_methods[] = {
    {"_bind", (PyCFunction)(void (*)(void))cc_bind, METH_FASTCALL,
     "_bind(l1, prefix, /)\n--\n\nArm the C hit path on a LocalCache and namespace prefix (None disarms)."},
    {"_probe", (PyCFunction)(void (*)(void))cc_probe, METH_FASTCALL | METH_KEYWORDS,
     "_probe(*args, **kwargs)\n--\n\nThe cached value of this call from L1, or the missing sentinel."},
    {"_key", (PyCFunction)(void (*)(void))cc_key, METH_FASTCALL | METH_KEYWORDS,
     "_key(*args, **kwargs)\n--\n\nThe L1 key the C path builds for this call, or None if it defers."},
    {"_counters", (PyCFunction)cc_counters, METH_NOARGS,
     "(hits, sampled, sampled_ns, max_ns, histogram counts) of the C hit path."},
    {"_monitor", (PyCFunction)cc_monitor, METH_O, "_monitor(flag, /)\n--\n\nSample hit latencies (or stop)."},
    {"_reset_counters", (PyCFunction)cc_reset_counters, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef cc_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CachedCallObject, vectorcall), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(CachedCallObject, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(CachedCallObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef cc_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_armed", (getter)cc_get_armed, NULL, "True when calls are looked up in C.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(cc_doc,
"CachedCall(func, miss, name, params, template, missing)\n--\n\n"
"The C hit path of a function decorated with TieredCache.cached (built by\n"
"tieredcache._decorators; not for direct use).");

static PyType_Slot cc_slots[] = {
    {Py_tp_new, cc_new},
    {Py_tp_dealloc, cc_dealloc},
    {Py_tp_traverse, cc_traverse},
    {Py_tp_clear, cc_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, cc_descr_get},
    {Py_tp_repr, cc_repr},
    {Py_tp_methods, cc_methods},
    {Py_tp_members, cc_members},
    {Py_tp_getset, cc_getset},
    {Py_tp_doc, (void *)cc_doc},
    {0, NULL},
};

PyType_Spec tc_cachedcall_spec = {
    .name = "tieredcache._core.CachedCall",
    .basicsize = sizeof(CachedCallObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = cc_slots,
};
