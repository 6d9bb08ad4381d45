"""Caps a collected Hypothesis test for the slow campaigns (memcheck, refleak): a fixed
seed, no example database, no deadline, at most ``max_examples`` examples. Shared by
memcheck_plugin.py and refleak_plugin.py."""

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
