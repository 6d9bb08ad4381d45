"""Shared pieces of the fuzzing campaign (``hardening/fuzz.sh``).

``Bytes`` turns a fuzz input into decisions, the way ``atheris.FuzzedDataProvider``
does, but in plain Python: the targets decode their input with it both under atheris
and when ``tests/test_fuzz_corpus.py`` replays the regression corpus without atheris,
so a corpus file means the same thing in both runs and across atheris versions. An
exhausted input yields zeros, so every byte string is a valid input.

``main(name)`` runs a target under atheris (``hardening/fuzz_run.py TARGET`` calls it);
it needs atheris (installed by ``fuzz.sh`` under build/fuzz/site); importing a target
module never does.

Pass criterion of every target: ``one_input`` returns for every input; it raises only
when an undocumented exception escapes or a result disagrees with the reference, and
atheris reports that (or a sanitizer report) as a crash.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any, Callable, Sequence

__all__ = ["Bytes", "main", "replay_dir"]


class Bytes:
    """A cursor over the fuzz input; every read past the end returns zeros/empties."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uint(self, nbytes: int) -> int:
        out = 0
        for _ in range(nbytes):
            out = (out << 8) | self.byte()
        return out

    def below(self, n: int) -> int:
        """An int in [0, n)."""
        if n <= 1:
            return 0
        return (self.uint(1 if n <= 256 else 2 if n <= 65536 else 4)) % n

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.below(len(seq))]

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def blob(self, max_len: int) -> bytes:
        """A length byte, then that many bytes (fewer at the end of the input)."""
        return self.take(self.below(max_len + 1))

    def text(self, max_len: int) -> str:
        """UTF-8 text; with the flag set, undecodable bytes become lone surrogates."""
        errors = "surrogateescape" if self.flag() else "replace"
        return self.blob(max_len).decode("utf-8", errors)

    def double(self) -> float:
        return struct.unpack("<d", self.take(8).ljust(8, b"\0"))[0]

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk


def replay_dir(path: str, one_input: Callable[[bytes], None]) -> int:
    """Run every file under ``path`` through ``one_input``; the number of files run."""
    n = 0
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                one_input(f.read())
            n += 1
    return n


def main(module_name: str) -> None:
    """Run the target module ``module_name`` under atheris.

    The tieredcache package and the target's own module are instrumented for Python
    coverage; the C extension carries its own (clang ``fuzzer-no-link``) when fuzz.sh
    built it. Arguments after the script name go to libFuzzer.
    """
    import atheris  # only here: replay runs without it

    with atheris.instrument_imports(include=["tieredcache", module_name, "refmodel"]):
        module = __import__(module_name)
    atheris.Setup(sys.argv, module.one_input)
    atheris.Fuzz()
