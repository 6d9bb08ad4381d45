"""Logging on the "tieredcache" logger: state changes once each, detail only at DEBUG,
never a password, a cached value or a raw key.

Each test captures every record of the logger at DEBUG while a workload with failures
runs (Redis killed and restarted, paused until calls time out, the breaker opening and
closing, the invalidation channel lost and resubscribed, a refused password, a corrupt
payload, a listener raising), then scans each record (message, arguments, exception and
stack text) for the planted secrets, and counts the records of each state change.
"""

from __future__ import annotations

import hashlib
import logging
import struct

import pytest

from tieredcache._breaker import describe_error, describe_traceback
from tieredcache._redis import RedisURL
from tieredcache._redis_server import RedisServer
from tiered_helpers import Caches, ConfigurationError, RawRedis, TieredCache, wait_until

PASSWORD = "s3cr3t-pw-7f1d"
WRONG_PASSWORD = "wr0ng-pw-91ac"
SECRET_VALUE = "card 4111-1111-1111-1111"
SECRET_KEY = "user:alice@example.com:ssn"
SECRETS = (PASSWORD, WRONG_PASSWORD, "4111-1111", "alice@example.com")
FAST = dict(socket_timeout=0.1, connect_timeout=0.1, pool_timeout=0.1)
RECOVERY = 20.0  # seconds: the bound on "recovers by itself"


def key_hash(key: str) -> str:
    return "key#" + hashlib.blake2b(key.encode(), digest_size=3).hexdigest()


# ---- capturing and scanning -----------------------------------------------------------------


def texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write about the record."""
    out = [record.getMessage(), str(record.msg), repr(record.args)]
    formatter = logging.Formatter()
    if record.exc_info:
        out.append(formatter.formatException(record.exc_info))
    if record.exc_text:
        out.append(record.exc_text)
    if record.stack_info:
        out.append(record.stack_info)
    out.append(formatter.format(record))
    return out


def assert_clean(records: list[logging.LogRecord], secrets=SECRETS) -> None:
    assert records, "nothing was logged: the scan would prove nothing"
    for record in records:
        for text in texts(record):
            for secret in secrets:
                assert secret not in text, f"{secret!r} logged: {text}"


class Logs:
    def __init__(self, caplog) -> None:
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger="tieredcache")

    @property
    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if r.name.startswith("tieredcache")]

    def matching(self, text: str, level: int | None = None) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage() and (level is None or r.levelno == level)]

    def count(self, text: str, level: int | None = None) -> int:
        return len(self.matching(text, level))


@pytest.fixture
def logs(caplog) -> Logs:
    return Logs(caplog)


@pytest.fixture
def server():
    """A Redis of this test's own that requires PASSWORD."""
    with RedisServer(password=PASSWORD) as srv:
        yield srv
        try:
            srv.resume()
        except Exception:
            pass


@pytest.fixture
def caches(server):
    made = Caches(redis_url=server.url, namespace="app", **FAST)
    yield made
    made.close()


def breaker(cache) -> str:
    return cache.stats()["l2"]["breaker"]


def connected(cache) -> bool:
    return cache.stats()["l2"]["connected"]


def recovered(cache) -> bool:
    cache.get("probe")  # a half-open breaker needs a call to probe
    return breaker(cache) == "closed" and connected(cache)


def failing_loader():
    raise RuntimeError(SECRET_VALUE)


def workload(cache, i: int) -> None:
    """Reads, writes, invalidations and loads of secret keys and values."""
    cache.get(SECRET_KEY)
    cache.set(f"{SECRET_KEY}:{i}", SECRET_VALUE, tags=[SECRET_KEY])
    cache.get_or_set(f"{SECRET_KEY}:load:{i}", lambda: SECRET_VALUE)
    with pytest.raises(RuntimeError):
        cache.get_or_set(f"{SECRET_KEY}:fail:{i}", failing_loader)
    cache.delete(SECRET_KEY)
    cache.invalidate_tags(SECRET_KEY)


# ---- outages --------------------------------------------------------------------------------


def test_a_redis_outage_logs_each_state_change_once_and_no_secret(server, caches, logs):
    assert PASSWORD in server.url
    cache = caches(breaker_threshold=3, breaker_cooldown=0.05)
    other = caches()
    cache.set(SECRET_KEY, SECRET_VALUE)
    assert other.get(SECRET_KEY) == SECRET_VALUE  # through Redis: the password is right
    other.close()  # (its channel would be lost and resubscribed too)
    workload(cache, 0)

    server.kill()
    assert wait_until(lambda: not connected(cache))
    probes = cache._core.breaker.transitions

    def many_failures() -> bool:
        workload(cache, 1)
        return cache._core.breaker.transitions >= probes + 6  # open, then probes failing

    assert wait_until(many_failures, timeout=RECOVERY)

    server.start()  # the same port and password, empty
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    workload(cache, 2)
    assert wait_until(lambda: not cache._core.outbox)

    # each state change once, however many calls failed and probes were made
    assert logs.count("circuit breaker open", logging.WARNING) == 1
    assert logs.count("circuit breaker closed", logging.INFO) == 1
    assert logs.count("invalidation channel lost", logging.WARNING) == 1
    assert logs.count("resubscribed", logging.INFO) == 1
    # per-operation detail at DEBUG only
    assert logs.count("L2 call failed", logging.DEBUG) >= 3
    assert logs.count("circuit breaker half-open", logging.DEBUG) >= 2
    assert logs.count("L2 call failed") == logs.count("L2 call failed", logging.DEBUG)
    assert logs.count("loader of key#", logging.DEBUG) >= 3
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING and "alert " not in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # channel lost, breaker open
    # what the messages say, redacted
    assert ":***@127.0.0.1" in logs.matching("invalidation channel lost")[0].getMessage()
    assert key_hash(f"{SECRET_KEY}:fail:1") in logs.matching("loader of")[1].getMessage()
    assert_clean(logs.records)


def test_timeouts_open_the_breaker_once_and_leak_nothing(server, caches, logs):
    cache = caches(breaker_threshold=2, breaker_cooldown=0.05)
    cache.set(SECRET_KEY, SECRET_VALUE)
    server.pause()  # connections stay open, nothing answers: every call times out
    try:
        def opened_and_probed() -> bool:
            cache.get(SECRET_KEY)
            cache.set(SECRET_KEY, SECRET_VALUE)
            return cache._core.breaker.transitions >= 4

        assert wait_until(opened_and_probed, timeout=RECOVERY)
        assert cache.stats()["l2"]["timeouts"] >= 2
    finally:
        server.resume()
    assert wait_until(lambda: recovered(cache), timeout=RECOVERY)
    assert logs.count("circuit breaker open", logging.WARNING) == 1
    assert logs.count("circuit breaker closed", logging.INFO) == 1
    assert logs.count("BackendTimeout", logging.DEBUG) >= 2
    assert_clean(logs.records)


@pytest.mark.parametrize("with_auth", [True, False], ids=["wrong-password", "server-without-auth"])
def test_a_refused_password_is_never_logged(with_auth, redis_server, logs):
    own = RedisServer(password=PASSWORD).start() if with_auth else None
    try:
        port = (own or redis_server).port
        # (a TieredCache waits connect_timeout for its subscription, which never comes)
        cache = TieredCache(redis_url=f"redis://:{WRONG_PASSWORD}@127.0.0.1:{port}/0", namespace="app",
                            breaker_threshold=2, breaker_cooldown=0.05, **FAST)
        try:
            for i in range(5):
                workload(cache, i)
            assert breaker(cache) != "closed"
            # the listener keeps retrying: quietly after the first report
            assert wait_until(lambda: logs.count("invalidation channel still down", logging.DEBUG) >= 3)
            assert repr(cache).count("***") == 1 and WRONG_PASSWORD not in repr(cache)
        finally:
            cache.close()
    finally:
        if own is not None:
            own.stop()
    assert logs.count("cannot subscribe to invalidations", logging.WARNING) == 1
    assert logs.count("circuit breaker open", logging.WARNING) == 1
    refused = logs.matching("cannot subscribe")[0].getMessage()
    assert ("WRONGPASS" if with_auth else "ERR AUTH <password>") in refused
    assert_clean(logs.records)


def test_the_channel_logs_when_it_finally_subscribes(logs):
    with RedisServer(password=PASSWORD) as srv:
        url = srv.url
        srv.kill()
        cache = TieredCache(redis_url=url, namespace="app", **FAST)
        try:  # Redis is down: the cache starts degraded
            assert not connected(cache)
            srv.start()
            assert wait_until(lambda: connected(cache), timeout=RECOVERY)
        finally:
            cache.close()
    assert logs.count("cannot subscribe to invalidations", logging.WARNING) == 1
    assert logs.count("invalidation channel subscribed", logging.INFO) == 1
    assert logs.count("resubscribed") == 0
    assert_clean(logs.records)


def test_an_overflowing_outbox_is_logged_when_it_turns_into_a_clear(server, caches, logs, monkeypatch):
    from tieredcache import _tiered

    monkeypatch.setattr(_tiered, "_OUTBOX_MAX", 10)
    cache = caches(breaker_threshold=1, breaker_cooldown=60)
    server.kill()
    cache.delete("first")  # fails: the breaker opens, the deletion waits in the outbox
    for i in range(14):
        cache.delete(f"{SECRET_KEY}:{i}")
    assert len(cache._core.outbox) == 5  # a clear of the namespace, then four deletions
    overflow = logs.matching("invalidations waiting for Redis", logging.WARNING)
    assert len(overflow) == 1 and "namespace 'app' will be cleared" in overflow[0].getMessage()
    assert_clean(logs.records)


# ---- corrupt payloads, keys -----------------------------------------------------------------


def corrupt(raw: RawRedis, namespace: str, key: str) -> None:
    """A payload whose value fails to decode with an error quoting the value."""
    header = struct.pack(">BQIQH", 2, 0, 0, 0, 0)
    raw.execute("SET", f"tc:{namespace}:k:{key}", header + b' {"__t":"dt","v":"4111-1111-1111-1111"}')


def test_an_undecodable_payload_logs_a_hashed_key_and_no_value(redis_url, logs):
    made = Caches(redis_url=redis_url, namespace="app")
    try:
        cache = made()
        with RawRedis(redis_url) as raw:
            corrupt(raw, "app", SECRET_KEY)
        for _ in range(5):
            assert cache.get(SECRET_KEY) is None  # treated as a miss
    finally:
        made.close()
    warned = logs.matching("undecodable payload", logging.WARNING)
    assert len(warned) == 1  # then at most once a minute; the others at DEBUG
    assert logs.count("undecodable payload", logging.DEBUG) == 4
    message = warned[0].getMessage()
    assert key_hash(SECRET_KEY) in message
    assert "SerializationError (from ValueError)" in message
    assert_clean(logs.records)


@pytest.mark.parametrize("log_keys, shown", [
    (True, repr(SECRET_KEY)),
    (lambda key: key.split(":")[0] + ":…", "user:…"),
])
def test_log_keys_shows_keys_as_configured(log_keys, shown, redis_url, logs):
    made = Caches(redis_url=redis_url, namespace="app", log_keys=log_keys)
    try:
        cache = made()
        with RawRedis(redis_url) as raw:
            corrupt(raw, "app", SECRET_KEY)
        assert cache.get(SECRET_KEY) is None
    finally:
        made.close()
    assert shown in logs.matching("undecodable payload", logging.WARNING)[0].getMessage()
    assert_clean(logs.records, secrets=(SECRET_VALUE, "4111-1111"))


def test_log_keys_is_checked():
    with pytest.raises(ConfigurationError, match="log_keys"):
        TieredCache(log_keys="yes")


def test_key_hashes_are_short_and_stable():
    from tieredcache._tiered import _key_hash

    assert _key_hash(SECRET_KEY) == key_hash(SECRET_KEY)
    assert len(_key_hash(SECRET_KEY)) == len("key#") + 6
    assert _key_hash("a") != _key_hash("b")


# ---- bugs in the listener and in user callbacks --------------------------------------------


def test_a_failing_listener_is_logged_once_with_frames_but_no_message(redis_url, logs, monkeypatch):
    made = Caches(redis_url=redis_url, namespace="app")
    try:
        cache, publisher = made(), made()
        core = cache._core
        applied = core._apply

        def broken(data):
            raise RuntimeError(f"cannot apply {data!r}")  # quotes the message: keys

        monkeypatch.setattr(core, "_apply", broken)
        for i in range(3):
            reconnects = core.stats["listener_reconnects"]
            publisher.set(f"{SECRET_KEY}:{i}", SECRET_VALUE)
            assert wait_until(lambda: core.stats["listener_reconnects"] > reconnects and connected(cache))
        monkeypatch.setattr(core, "_apply", applied)
        publisher.set(SECRET_KEY, SECRET_VALUE)
        assert wait_until(lambda: cache.get(SECRET_KEY) == SECRET_VALUE)
    finally:
        made.close()
    failed = logs.matching("invalidation listener failed", logging.ERROR)
    assert len(failed) == 1
    assert "in broken" in failed[0].getMessage() and "RuntimeError (message not logged)" in failed[0].getMessage()
    assert logs.count("invalidation listener failed again", logging.DEBUG) == 2
    assert logs.count("resubscribed", logging.INFO) == 0  # restarts after a bug: DEBUG
    assert_clean(logs.records)


def test_a_failing_event_listener_is_logged_without_its_message(logs):
    cache = TieredCache()
    try:
        def listener(event, detail):
            raise KeyError(detail["key"])

        cache.add_listener(listener)
        cache.delete(SECRET_KEY)  # the listener fails; delete does not
    finally:
        cache.close()
    failed = logs.matching("listener", logging.ERROR)
    assert len(failed) == 1 and "KeyError (message not logged)" in failed[0].getMessage()
    assert_clean(logs.records)


# ---- the helpers ----------------------------------------------------------------------------


def test_describe_error_masks_passwords_and_quoted_arguments():
    assert describe_error(OSError("to redis://:pw@h:1/0 and rediss://u:p@ss@h")) == \
        "OSError: to redis://:***@h:1/0 and rediss://u:***@h"
    quoted = Exception("ERR unknown command 'EVALSHA', with args beginning with: 'tc:app:k:secret' 'value'")
    assert describe_error(quoted) == "Exception: ERR unknown command 'EVALSHA'"
    assert describe_error(KeyError()) == "KeyError"
    assert len(describe_error(ValueError("x" * 1000))) < 320


def test_describe_traceback_keeps_frames_and_types_only():
    def inner():
        raise ValueError(SECRET_VALUE)

    try:
        try:
            inner()
        except ValueError as exc:
            raise RuntimeError(SECRET_KEY) from exc
    except RuntimeError as exc:
        text = describe_traceback(exc)
    assert "in inner" in text and "which led to:" in text
    assert "ValueError (message not logged)" in text and "RuntimeError (message not logged)" in text
    assert SECRET_VALUE not in text and SECRET_KEY not in text


def test_url_errors_mask_a_password_written_without_a_user():
    with pytest.raises(ConfigurationError) as info:
        RedisURL.parse(f"redis://{PASSWORD}@127.0.0.1:6379/0")
    assert PASSWORD not in str(info.value) and "***" in str(info.value)
