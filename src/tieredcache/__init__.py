"""tieredcache: an in-process C cache (L1) in front of Redis (L2) in front of your database.

The public surface is the names in ``__all__``; everything in a ``_module`` is private.
"""

from __future__ import annotations

import os as _os

from . import testing
from ._core import LocalCache
from ._core import _after_fork_child, _after_fork_parent, _before_fork

__all__ = [
    "LocalCache",
    "__version__",
    "testing",
]

__version__ = "0.1.0"

# A cache used before os.fork() must work in the child: the parent waits for any bulk
# operation that runs without the GIL to finish, and the child resets every store lock.
_os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_parent,
    after_in_child=_after_fork_child,
)
