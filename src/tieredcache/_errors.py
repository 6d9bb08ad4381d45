"""The exception tree of tieredcache.

::

    Exception
    └── CacheError                      every error raised by tieredcache
        ├── ConfigurationError          a bad setting (also a ValueError)
        ├── SerializationError          a value cannot be encoded, or a payload decoded
        │   └── SignatureError          a pickle payload is unsigned or its HMAC is wrong
        └── BackendError                the L2 tier (Redis) failed
            ├── BackendUnavailable      cannot connect, connection lost, circuit open
            │   └── CircuitOpenError    the circuit breaker is refusing calls
            ├── BackendTimeout          no reply within the timeout (also a TimeoutError)
            ├── PoolTimeout             no free connection within pool_timeout
            └── BackendResponseError    Redis answered with an error reply

By default ``TieredCache`` never lets a ``BackendError`` reach the caller: it serves from
L1 and the loader instead. With ``on_error="raise"`` it raises them.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendResponseError",
    "BackendTimeout",
    "BackendUnavailable",
    "CacheError",
    "CircuitOpenError",
    "ConfigurationError",
    "PoolTimeout",
    "SerializationError",
    "SignatureError",
]


class CacheError(Exception):
    """Root of every error raised by tieredcache."""


class ConfigurationError(CacheError, ValueError):
    """A setting is invalid (bad URL, unknown serializer, missing secret...)."""


class SerializationError(CacheError):
    """A value could not be encoded, or a stored payload could not be decoded."""


class SignatureError(SerializationError):
    """A signed payload (pickle) is unsigned, truncated or carries a wrong HMAC."""


class BackendError(CacheError):
    """The L2 tier (Redis) failed."""


class BackendUnavailable(BackendError):
    """Redis cannot be reached (connect failed, connection lost)."""


class CircuitOpenError(BackendUnavailable):
    """The circuit breaker is open: Redis is not being tried until the cool-down ends."""


class BackendTimeout(BackendError, TimeoutError):
    """Redis did not answer within the timeout; the connection was discarded."""


class PoolTimeout(BackendError):
    """Every pooled connection stayed busy for longer than pool_timeout."""


class BackendResponseError(BackendError):
    """Redis answered with an error reply (the message is Redis's)."""
