"""pytest plugin for the valgrind memcheck campaign (campaign 2 of issue 7).

It does not check anything itself (valgrind does, hardening/memcheck_report.py reads the
verdict); it makes the suite runnable at memcheck's speed (20-50x slower than native):

* the conftest's hang watchdog (120 s per test) is stretched by ``--memcheck-slowdown``;
* Hypothesis tests are capped at ``--memcheck-max-examples`` examples (0 = leave them),
  derandomized and without deadline, so a run is repeatable and bounded;
* ``--memcheck-c-only`` deselects the conformance tests' runs against the pure-Python
  reference model (the ``impl`` fixture's ModelCache parameter): no C code in them;
* ``--memcheck-skip-fixture NAME`` deselects the tests using that fixture (Redis);
* pytest's outcome counts are written to ``--memcheck-outcome`` (a file), because the
  process's exit status is not the place to read it under valgrind.
"""

from __future__ import annotations

import json
import sys

import pytest

from campaign_items import cap_hypothesis as _cap_hypothesis, deselect as _deselect


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memcheck")
    group.addoption("--memcheck-max-examples", type=int, default=0,
                    help="cap Hypothesis tests at this many examples (0: unchanged)")
    group.addoption("--memcheck-slowdown", type=int, default=20,
                    help="multiply the conftest watchdog's per-test limit by this")
    group.addoption("--memcheck-c-only", action="store_true",
                    help="deselect the runs of the reference model (impl=ModelCache): pure Python")
    group.addoption("--memcheck-skip-fixture", action="append", default=[], metavar="NAME",
                    help="deselect the tests that use this fixture (repeatable; e.g. redis_url)")
    group.addoption("--memcheck-outcome", default=None,
                    help="write pytest's outcome counts and exit status here (JSON)")


class _State:
    counts: dict[str, int] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect(config, items, config.getoption("--memcheck-c-only"),
              set(config.getoption("--memcheck-skip-fixture")))
    n = config.getoption("--memcheck-max-examples")
    if n > 0:
        for item in items:
            _cap_hypothesis(item, n)


def pytest_collection_finish(session: pytest.Session) -> None:
    factor = session.config.getoption("--memcheck-slowdown")
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").endswith("conftest") and hasattr(mod, "WATCHDOG_SECONDS"):
            mod.WATCHDOG_SECONDS *= factor


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        key = report.outcome if report.when == "call" else f"{report.when}-{report.outcome}"
        _State.counts[key] = _State.counts.get(key, 0) + 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--memcheck-outcome")
    if path:
        with open(path, "w") as f:
            json.dump({"exitstatus": int(exitstatus), "counts": _State.counts}, f)
