"""Replays the fuzzing campaign's regression corpus in the normal suite, without atheris.

``tests/fuzz_corpus/<target>/`` holds a small seed set per target and every input the
campaign (``hardening/fuzz.sh``) found a bug with (``regress-*``, each failing before its
fix; see ``test_fuzz_regressions.py``). Each file goes through the same function the
fuzzer calls, ``one_input`` of ``hardening/fuzz_<target>.py``, which checks results
against the reference and lets only documented exceptions through. Pass: every file
runs without an exception.
"""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
TARGETS = ("localcache", "serializers", "templates", "redis_reply")
if str(ROOT / "hardening") not in sys.path:
    sys.path.insert(0, str(ROOT / "hardening"))

CASES = [(t, p.name) for t in TARGETS for p in sorted((CORPUS / t).iterdir()) if p.is_file()]


def target(name: str):
    return importlib.import_module(f"fuzz_{name}")


@pytest.mark.parametrize("name, file", CASES, ids=[f"{t}/{f}" for t, f in CASES])
def test_a_corpus_input_passes_its_target(name, file):
    target(name).one_input((CORPUS / name / file).read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_seeds_and_takes_any_bytes(name):
    assert any(t == name for t, _ in CASES), f"tests/fuzz_corpus/{name}/ is empty"
    one_input = target(name).one_input
    for data in (b"", b"\x00", b"\xff" * 64, bytes(range(256))):  # every byte string is an input
        one_input(data)


def test_the_targets_run_without_atheris():
    for name in TARGETS:
        target(name)
    assert "atheris" not in sys.modules
