/* cachedcall.h -- the Python type CachedCall (see cachedcall.c). */
#ifndef TIEREDCACHE_CACHEDCALL_H
#define TIEREDCACHE_CACHEDCALL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyType_Spec tc_cachedcall_spec;

/* The LocalCache type, against which _bind() checks its argument (set at module exec). */
void tc_cachedcall_set_localcache_type(PyTypeObject *t);

#endif
