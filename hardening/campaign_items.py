"""What the slow campaigns (memcheck, refleak) do to the collected tests, shared by
memcheck_plugin.py and refleak_plugin.py: ``deselect`` leaves out the reference model's
runs and the tests that use given fixtures (Redis); ``cap_hypothesis`` caps a Hypothesis
test (a fixed seed, no example database, no deadline, at most ``max_examples``)."""

from __future__ import annotations

import pytest


def cap_hypothesis(item: pytest.Item, max_examples: int) -> None:
    from hypothesis import settings

    def capped(parent: settings) -> settings:
        return settings(parent, derandomize=True, database=None, deadline=None,
                        max_examples=min(parent.max_examples, max_examples))

    obj = getattr(item, "obj", None)
    if getattr(obj, "is_hypothesis_test", False):
        target = getattr(obj, "__func__", obj)  # a test method: the function under it
        current = getattr(target, "_hypothesis_internal_use_settings", None) or settings.default
        target._hypothesis_internal_use_settings = capped(current)
        return
    cls = getattr(item, "cls", None)  # a RuleBasedStateMachine's TestCase
    if cls is not None and isinstance(getattr(cls, "settings", None), settings):
        cls.settings = capped(cls.settings)


def deselect(config: pytest.Config, items: list[pytest.Item], c_only: bool, skip_fixtures: set[str]) -> None:
    """Drop (as deselected) the runs against the pure-Python reference model
    (``impl=ModelCache``) when ``c_only``, and the tests using any of ``skip_fixtures``."""
    if not (c_only or skip_fixtures):
        return
    keep, drop = [], []
    for item in items:
        impl = getattr(getattr(item, "callspec", None), "params", {}).get("impl")
        model = c_only and getattr(impl, "__name__", "") == "ModelCache"
        skipped = skip_fixtures & set(getattr(item, "fixturenames", ()))
        (drop if model or skipped else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
