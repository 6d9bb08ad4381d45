/* localcache.h -- the Python type LocalCache (see localcache.c). */
#ifndef TIEREDCACHE_LOCALCACHE_H
#define TIEREDCACHE_LOCALCACHE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyType_Spec tc_localcache_spec;

/* Interned argument names; created by tc_localcache_init_names at module exec. */
int tc_localcache_init_names(void);

/* Fork support over every live LocalCache in the process (called with the GIL). */
void tc_localcache_before_fork(void);
void tc_localcache_after_fork_parent(void);
void tc_localcache_after_fork_child(void);

/* cache.get(key, dflt) for another C file: `cache` must be a LocalCache. New reference
 * to the value or to dflt; NULL with an exception (bad key). */
PyObject *tc_localcache_get(PyObject *cache, PyObject *key, PyObject *dflt);

/* Whether invalidations wait to be applied: the fence is raised or the watched socket
 * has data (see fence.c). */
int tc_localcache_pending(PyObject *cache);

/* Parse a TTL argument: None -> TC_NO_DEADLINE when allow_none, else a positive
 * finite number of seconds up to 100 years -> nanoseconds. 0 or -1 with an exception
 * naming `argname`. */
int tc_parse_seconds(PyObject *obj, const char *argname, int allow_none, int64_t *ns);

#endif
