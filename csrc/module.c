/*
 * module.c -- tieredcache._core: module init, the clock functions, fork hooks.
 *
 * Multi-phase init (PEP 489); the LocalCache and CachedCall types are heap types created
 * from their specs at exec time and kept in the module state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#include "cachedcall.h"
#include "clock.h"
#include "localcache.h"

typedef struct {
    PyObject *LocalCacheType;
    PyObject *CachedCallType;
} module_state;

static PyObject *advance_clock(PyObject *Py_UNUSED(m), PyObject *seconds) {
    if (PyBool_Check(seconds) || !(PyLong_Check(seconds) || PyFloat_Check(seconds))) {
        PyErr_Format(PyExc_TypeError, "seconds must be a number, not %.100s", Py_TYPE(seconds)->tp_name);
        return NULL;
    }
    double v = PyFloat_AsDouble(seconds);
    if (v == -1.0 && PyErr_Occurred()) return NULL;
    if (!(v >= 0) || isinf(v) || v > 1e9) {
        PyErr_Format(PyExc_ValueError, "seconds must be a finite number between 0 and 1e9, got %R", seconds);
        return NULL;
    }
    tc_clock_advance((int64_t)llround(v * 1e9));
    Py_RETURN_NONE;
}

static PyObject *reset_clock(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    tc_clock_reset();
    Py_RETURN_NONE;
}

static PyObject *monotonic(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    return PyFloat_FromDouble((double)tc_now() / 1e9);
}

static PyObject *before_fork(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    tc_localcache_before_fork();
    Py_RETURN_NONE;
}

static PyObject *after_fork_parent(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    tc_localcache_after_fork_parent();
    Py_RETURN_NONE;
}

static PyObject *after_fork_child(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    tc_localcache_after_fork_child();
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"advance_clock", advance_clock, METH_O,
     "advance_clock(seconds, /)\n--\n\nMove the clock of every cache in this process forward (testing hook)."},
    {"reset_clock", reset_clock, METH_NOARGS,
     "reset_clock()\n--\n\nRemove the offset added by advance_clock()."},
    {"monotonic", monotonic, METH_NOARGS, "monotonic()\n--\n\nThe caches' clock, in seconds."},
    {"_before_fork", before_fork, METH_NOARGS, NULL},
    {"_after_fork_parent", after_fork_parent, METH_NOARGS, NULL},
    {"_after_fork_child", after_fork_child, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m) {
    module_state *st = PyModule_GetState(m);
    tc_clock_init();
    if (tc_localcache_init_names() < 0) return -1;
    st->LocalCacheType = PyType_FromModuleAndSpec(m, &tc_localcache_spec, NULL);
    if (st->LocalCacheType == NULL) return -1;
    if (PyModule_AddObjectRef(m, "LocalCache", st->LocalCacheType) < 0) return -1;
    tc_cachedcall_set_localcache_type((PyTypeObject *)st->LocalCacheType);
    st->CachedCallType = PyType_FromModuleAndSpec(m, &tc_cachedcall_spec, NULL);
    if (st->CachedCallType == NULL) return -1;
    if (PyModule_AddObjectRef(m, "CachedCall", st->CachedCallType) < 0) return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
    module_state *st = PyModule_GetState(m);
    Py_VISIT(st->LocalCacheType);
    Py_VISIT(st->CachedCallType);
    return 0;
}

static int module_clear(PyObject *m) {
    module_state *st = PyModule_GetState(m);
    Py_CLEAR(st->LocalCacheType);
    Py_CLEAR(st->CachedCallType);
    return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tieredcache._core",
    .m_doc = "The C core of tieredcache: LocalCache, the in-process L1 store.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&module_def); }
