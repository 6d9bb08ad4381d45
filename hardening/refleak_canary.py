"""Canary for hardening/refleak_plugin.py (not part of the normal suite: its name does not
match test_*.py; hardening/refleak.sh runs it first and checks the verdicts).

Three tests leak on purpose, one figure each, on every repetition; one does not. The
plugin must flag exactly the three (``REFLEAK ... leaking=3``) or the campaign would be a
test that cannot fail.
"""

import ctypes
import os

_kept: list = []


def test_canary_leaks_a_reference():
    # One more reference to a long-lived object each time, no new memory block.
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(os))


def test_canary_leaks_a_block():
    # An unreachable cycle-free object whose refcount never drops: a block and a reference.
    obj = object()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def test_canary_leaks_a_file_descriptor():
    os.open(os.devnull, os.O_RDONLY)  # never closed, the number dropped


def test_canary_clean():
    _kept.clear()
    _kept.append(object())
