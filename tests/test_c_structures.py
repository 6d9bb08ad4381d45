"""The plain-C structures (timing wheel, frequency sketch, tag index, W-TinyLFU policy)
hold their invariants under random operations, checked against reference models in
tests/c/harness.c, built with AddressSanitizer and UndefinedBehaviorSanitizer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["tests/c/harness.c", "csrc/wheel.c", "csrc/sketch.c", "csrc/tags.c", "csrc/policy.c"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler on PATH to build tests/c/harness.c")
    exe = tmp_path_factory.mktemp("harness") / "harness"
    cmd = [cc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           f"-I{ROOT / 'csrc'}", *[str(ROOT / s) for s in SOURCES], "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


@pytest.mark.parametrize("seed", range(1, 7))
def test_structures_keep_their_invariants_under_random_operations(harness: Path, seed: int) -> None:
    run = subprocess.run([str(harness), str(seed), "20000"], capture_output=True, text=True,
                         env={"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok"), run.stdout
