"""The refleak campaign's check of what Hypothesis generates, without Hypothesis running.

Why this file exists: a Hypothesis test repeated under ``refleak_plugin`` grows by itself.
Measured on 2026-11-21 under python3.11-dbg with Hypothesis derandomized (the same 25
programs each run): ``tests/test_local_stateful.py``'s state machine run 8 times in a row
grows by 4,175 references and ~1,700 blocks per run -- and by exactly as much with the
pure-Python reference model put in place of ``LocalCache``, where no C code of ours runs.
The growth is Hypothesis's own bookkeeping, so those tests cannot pass the plugin's
"every delta is zero" rule whatever our code does.

What is checked here instead: the inputs Hypothesis generated are recorded once (in a
module-scoped fixture, which the plugin sets up before its first repetition and keeps up),
and each test *replays* them against our code with Hypothesis out of the loop. A delta is
then ours.

* the state machine: every call it made on ``LocalCache`` and every clock move, in order,
  recorded through a proxy, then replayed on fresh caches;
* the serializers: the values ``tests/test_serializers.py``'s ``values`` strategy draws,
  round-tripped through JSON, pickle and compressed serializers, and decoded after damage
  (a flipped byte or a truncation, chosen by a seeded ``random.Random``).

Collected only by ``hardening/refleak.sh full`` (the name does not match ``test_*.py``);
``--refleak-max-examples`` sets how many programs and values are recorded.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

import tieredcache.testing as testing  # noqa: E402
from tieredcache import LocalCache  # noqa: E402


def _recording(examples: int) -> settings:
    return settings(derandomize=True, database=None, deadline=None, max_examples=examples,
                    stateful_step_count=50, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def examples(request) -> int:
    return request.config.getoption("--refleak-max-examples", default=25)


# ---- the state machine ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def machine_calls(examples):
    """[("new", kwargs) | (method, args, kwargs) | ("advance", (seconds,), {})], in order."""
    import test_local_stateful as machine

    log: list = []

    class Recording:
        """LocalCache as the state machine sees it, writing down each call."""

        def __init__(self, **kwargs):
            log.append(("new", kwargs))
            self._cache = LocalCache(**kwargs)

        def __getattr__(self, name):
            method = getattr(self._cache, name)

            def call(*args, **kwargs):
                log.append((name, args, kwargs))
                return method(*args, **kwargs)
            return call

        def __len__(self):
            log.append(("__len__", (), {}))
            return len(self._cache)

    def advance(seconds):
        log.append(("advance", (seconds,), {}))
        testing.advance_clock(seconds)

    saved = machine.LocalCache, machine.advance_clock
    machine.LocalCache, machine.advance_clock = Recording, advance
    try:
        run_state_machine_as_test(machine.CacheVersusModel, settings=_recording(examples))
    finally:
        machine.LocalCache, machine.advance_clock = saved
    assert sum(1 for entry in log if entry[0] == "new") == examples
    return log


def test_the_state_machines_programs_replayed_on_the_c_core_keep_nothing(machine_calls):
    cache = None
    for entry in machine_calls:
        if entry[0] == "new":
            cache = LocalCache(**entry[1])
            continue
        name, args, kwargs = entry
        if name == "advance":
            testing.advance_clock(*args)
            continue
        try:
            getattr(cache, name)(*args, **kwargs)
        except KeyError:  # ttl() of a missing key, as in the machine
            pass
    cache.clear()


# ---- the serializers -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def serializer_values(examples):
    import bson
    from test_serializers import values

    from tieredcache._serializers import _unregister_codec, register_codec

    drawn: list = []

    @_recording(examples)
    @given(value=values)
    def record(value):
        drawn.append(value)

    register_codec(bson.ObjectId, "objectid", str, bson.ObjectId)
    record()
    yield drawn
    _unregister_codec("objectid")


def test_generated_values_round_trip_through_json_and_pickle_and_keep_nothing(serializer_values):
    from test_serializers import JSON, PICKLE, roundtrip, same

    for value in serializer_values:
        assert same(roundtrip(JSON, value), value)
        assert same(roundtrip(PICKLE, value), value)


def test_generated_values_round_trip_compressed_and_keep_nothing(serializer_values):
    from test_serializers import KEY, roundtrip, same

    from tieredcache._serializers import make_serializer

    pick = random.Random(7)
    for value in serializer_values:
        wrapped = make_serializer(pick.choice(["json", "pickle"]), secret_key=KEY,
                                  compress_threshold=pick.randint(0, 300))
        assert same(roundtrip(wrapped, value), value)


def test_damaged_payloads_of_generated_values_decode_or_raise_and_keep_nothing(serializer_values):
    from test_serializers import SERIALIZERS, check_damaged_payload

    pick = random.Random(11)
    for value in serializer_values:
        name = pick.choice(sorted(SERIALIZERS))
        data = bytearray(SERIALIZERS[name].dumps(value))
        where = pick.randrange(len(data))
        if pick.random() < 0.5:
            data[where] ^= pick.randint(1, 255)
        else:
            del data[where:]
        check_damaged_payload(name, bytes(data))
