"""Reference-leak hunting for pytest under a debug CPython (campaign 3 of issue 7).

What it checks: every selected test function is run ``WARMUP + RUNS`` times in a row, each
time the whole protocol (fixture setup, the call, teardown; module- and session-scoped
fixtures stay up between repetitions), like CPython's ``regrtest -R WARMUP:RUNS``. After
each repetition it collects garbage, clears the interpreter's own caches the way
``regrtest`` does, and reads three figures:

* ``sys.gettotalrefcount()``  (debug builds only: the sum of all reference counts),
* ``sys.getallocatedblocks()`` (memory blocks held by the object allocator),
* the number of open file descriptors (``/proc/self/fd``).

The deltas of the ``RUNS`` measured repetitions are kept (the warm-up ones fill caches,
interned strings, lazy imports). Pass criterion, CPython's rule: a test leaks a figure if
that figure's delta is non-zero in *every* measured repetition (a single noisy run is not a
leak, a steady one is: regrtest's ``all(delta >= 1)``); for file descriptors any non-zero
delta in a measured run is a leak (descriptors do not fluctuate). A leaking test fails with
its deltas in the report, and the session summary line ``REFLEAK ...`` gives the counts the
runner script turns into its verdict.

Harness noise removed, each measured: the delta lists are preallocated (appending would
add references), captured-output sections are dropped between repetitions, and pytest's
``tmp_path`` is replaced by a plain temporary directory (pytest's keeps ~30 references and
10 blocks per use until the session ends).

Hypothesis tests are made repeatable: derandomized, no example database, and their
``max_examples`` capped (``--refleak-max-examples``, default 25), so that each repetition
replays the same examples and a delta means the code under test kept something.

Usage (hardening/refleak.sh does this)::

    python-dbg -m pytest -p refleak_plugin --refleak 3:3 tests/test_local_conformance.py
"""

from __future__ import annotations

import gc
import os
import re
import sys

import pytest

from campaign_items import cap_hypothesis as _cap_hypothesis, deselect as _deselect
from _pytest.runner import runtestprotocol

FIGURES = ("refs", "blocks", "fds")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refleak")
    group.addoption("--refleak", default=None, metavar="WARMUP:RUNS",
                    help="repeat each test WARMUP+RUNS times and fail it if it leaks references, "
                         "allocated blocks or file descriptors in every measured run (e.g. 3:3)")
    group.addoption("--refleak-max-examples", type=int, default=25,
                    help="cap on Hypothesis examples per repetition (default 25)")
    group.addoption("--refleak-skip-fixture", action="append", default=[], metavar="NAME",
                    help="deselect the tests that use this fixture (repeatable; e.g. redis_url)")
    group.addoption("--refleak-c-only", action="store_true",
                    help="deselect the runs against the pure-Python reference model (impl=ModelCache)")
    group.addoption("--refleak-expect-core", default=None, metavar="DIR",
                    help="fail the session if tieredcache._core was not imported from DIR")


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--refleak")
    if not spec:
        return
    if not hasattr(sys, "gettotalrefcount"):
        raise pytest.UsageError("--refleak needs a debug build of CPython (sys.gettotalrefcount)")
    m = re.fullmatch(r"(\d+):(\d+)", spec)
    if not m or int(m.group(2)) < 1:
        raise pytest.UsageError(f"--refleak wants WARMUP:RUNS with RUNS >= 1, got {spec!r}")
    config.pluginmanager.register(RefleakChecker(int(m.group(1)), int(m.group(2)),
                                                 config.getoption("--refleak-max-examples"),
                                                 config.getoption("--refleak-c-only"),
                                                 config.getoption("--refleak-expect-core"),
                                                 config.getoption("--refleak-skip-fixture")),
                                  "refleak-checker")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _clear_caches() -> None:
    """What regrtest's dash_R_cleanup clears that a test may fill on first use only."""
    import linecache

    re.purge()
    linecache.clearcache()
    sys._clear_type_cache()
    for name in ("typing", "struct", "abc", "urllib.parse", "fnmatch", "copyreg"):
        mod = sys.modules.get(name)
        if mod is None:
            continue
        if name == "typing":
            for clear in getattr(mod, "_cleanups", ()):
                clear()
        elif name == "struct":
            mod._clearcache()
        elif name == "urllib.parse":
            mod.clear_cache()
        elif name == "fnmatch":
            mod._compile_pattern.cache_clear()


def _snapshot() -> tuple[int, int, int]:
    _clear_caches()
    gc.collect()
    return sys.gettotalrefcount(), sys.getallocatedblocks(), _fd_count()


class RefleakChecker:
    def __init__(self, warmup: int, runs: int, max_examples: int, c_only: bool = False,
                 expect_core: str | None = None, skip_fixtures: list[str] | None = None) -> None:
        self.c_only = c_only
        self.skip_fixtures = set(skip_fixtures or ())
        self.expect_core = expect_core
        self.warmup = warmup
        self.runs = runs
        self.max_examples = max_examples
        self.checked = 0
        self.leaks: dict[str, dict[str, list[int]]] = {}
        self.worst = dict.fromkeys(FIGURES, 0)

    @pytest.fixture
    def tmp_path(self):
        """Replaces pytest's tmp_path while checking: pytest's own keeps about 30 references
        and 10 blocks per use for its end-of-session bookkeeping, which would make every test
        using it look leaky. A fresh directory, removed at teardown."""
        import shutil
        import tempfile
        from pathlib import Path

        path = Path(tempfile.mkdtemp(prefix="refleak-"))
        yield path
        shutil.rmtree(path, ignore_errors=True)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        _deselect(config, items, self.c_only, self.skip_fixtures)
        for item in items:
            _cap_hypothesis(item, self.max_examples)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        # Preallocated: appending to these lists during the measured runs would itself
        # add references (regrtest does the same).
        deltas: dict[str, list[int]] = {f: [0] * self.runs for f in FIGURES}
        failed_early = None
        # Repetitions keep higher-scoped fixtures up: tearing down "towards" the item's
        # parent node ends only what belongs to this one test (its function-scoped fixtures).
        before = _snapshot()
        for i in range(self.warmup + self.runs):
            reports = runtestprotocol(item, nextitem=item.parent, log=False)
            bad = any(r.failed or r.skipped for r in reports)
            del reports
            # Captured output sections accumulate on the item across repetitions: pytest's
            # bookkeeping, not the test's.
            item._report_sections.clear()
            if bad:
                failed_early = i
                break
            after = _snapshot()
            if i >= self.warmup:
                for j, name in enumerate(FIGURES):
                    deltas[name][i - self.warmup] = after[j] - before[j]
            before = after
        # The run that is reported: with the real nextitem, so scoped fixtures end properly.
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if failed_early is None:
            self.checked += 1
            if os.environ.get("REFLEAK_VERBOSE"):
                print(f"\n[refleak] {item.nodeid} {deltas}", file=sys.stderr)
            leaked = {name: d for name, d in deltas.items() if self._leaks(name, d)}
            for name, d in deltas.items():
                self.worst[name] = max(self.worst[name], max((abs(x) for x in d), default=0))
            if leaked:
                self.leaks[item.nodeid] = deltas
                msg = "leaked in every measured run: " + ", ".join(
                    f"{name} deltas {deltas[name]}" for name in leaked)
                for rep in reports:
                    if rep.when == "call" and rep.passed:
                        rep.outcome = "failed"
                        rep.longrepr = f"{item.nodeid}: {msg}"
        for rep in reports:
            ihook.pytest_runtest_logreport(report=rep)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @staticmethod
    def _leaks(name: str, d: list[int]) -> bool:
        if name == "fds":
            return any(d)
        # regrtest's check_rc_deltas: a leak grows in every run; [1, -1, 1] or [3, 0, 0]
        # are the noise of a thread finishing late or a cache settling.
        return bool(d) and all(x >= 1 for x in d)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        core = sys.modules.get("tieredcache._core")
        if self.expect_core and core is not None and \
                not os.path.realpath(core.__file__).startswith(os.path.realpath(self.expect_core)):
            self.wrong_core = core.__file__
            session.exitstatus = 1

    wrong_core: str | None = None

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        tr.section("refleak")
        core = sys.modules.get("tieredcache._core")
        if core is not None:
            tr.write_line(f"tieredcache._core under test: {core.__file__}")
        if self.wrong_core:
            tr.write_line(f"REFLEAK-ERROR the tests imported {self.wrong_core}, not the build in "
                          f"{self.expect_core}")
        for nodeid, deltas in self.leaks.items():
            tr.write_line(f"LEAK {nodeid}: " + ", ".join(f"{k}={v}" for k, v in deltas.items()))
        tr.write_line(f"REFLEAK checked={self.checked} leaking={len(self.leaks)} "
                      f"warmup={self.warmup} runs={self.runs} "
                      f"max_abs_delta refs={self.worst['refs']} blocks={self.worst['blocks']} "
                      f"fds={self.worst['fds']}")
