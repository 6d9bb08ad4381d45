"""tieredcache: an in-process C cache (L1) in front of Redis (L2) in front of your database.

The public surface is the names in ``__all__``; everything in a ``_module`` is private.
"""

from __future__ import annotations

import os as _os

from . import testing
from ._core import LocalCache
from ._core import _after_fork_child, _after_fork_parent, _before_fork
from ._errors import (
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnavailable,
    CacheError,
    CircuitOpenError,
    ConfigurationError,
    PoolTimeout,
    SerializationError,
    SignatureError,
)

# A cache used before os.fork() must work in the child: the parent waits for any bulk
# operation that runs without the GIL to finish, and the child resets every store lock.
# Registered before anything else (after_in_child hooks run in registration order), so
# that TieredCache's own hook, which empties L1 in the child, finds working locks.
_os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_parent,
    after_in_child=_after_fork_child,
)

from ._tiered import NoStore, TieredCache  # noqa: E402
from ._alerts import AlertEngine, Rule as AlertRule  # noqa: E402
from ._decorators import (  # noqa: E402
    cached,
    configure,
    get_cache,
    invalidates,
    reset_default_cache,
    warm_default as warm,
    warmer,
)
from .presets import (  # noqa: E402
    TTL,
    cache_analytics_data,
    cache_appointment_slots,
    cache_business_intelligence,
    cache_static_reference_data,
    invalidate_appointment_cache,
)

__all__ = [
    "AlertEngine",
    "AlertRule",
    "BackendError",
    "BackendResponseError",
    "BackendTimeout",
    "BackendUnavailable",
    "CacheError",
    "CircuitOpenError",
    "ConfigurationError",
    "LocalCache",
    "NoStore",
    "PoolTimeout",
    "SerializationError",
    "SignatureError",
    "TTL",
    "TieredCache",
    "__version__",
    "cache_analytics_data",
    "cache_appointment_slots",
    "cache_business_intelligence",
    "cache_static_reference_data",
    "cached",
    "configure",
    "get_cache",
    "invalidate_appointment_cache",
    "invalidates",
    "register_codec",
    "reset_default_cache",
    "testing",
    "warm",
    "warmer",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    # the serializers load on first use (json/pickle/hmac/zlib stay out of the import)
    if name == "register_codec":
        from ._serializers import register_codec

        return register_codec
    raise AttributeError(f"module 'tieredcache' has no attribute {name!r}")

