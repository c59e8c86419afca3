"""Fair, FIFO, per-key locks across threads, processes and machines.

    store = ticketlock.LockStore.from_url("redis://localhost:6379/1")
    async with store.lock("sender-42", timeout=5) as guard:
        ...  # one holder at a time per conversation, in arrival order

`ticketlock.rasa` has drop-in lock stores for Rasa's `endpoints.yml`.
"""

from __future__ import annotations

import atexit as _atexit
import os as _os

from ._errors import (
    ConfigError,
    CorruptRecordError,
    ExpiredError,
    InvalidIdError,
    LockError,
    LockTimeoutError,
    QueueFullError,
    UnavailableError,
)
from ._core import DEFAULT_LIFETIME, Guard, LockRequest, LockStore, RedisLockRequest
from . import _core

# The package owns its tokio runtime: a forked child builds its own (and its
# stores reconnect), and at exit the runtime is flushed and stopped before
# the interpreter finalizes.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_core._after_fork_in_child)
_atexit.register(_core._shutdown)

__all__ = [
    "DEFAULT_LIFETIME",
    "Guard",
    "LockRequest",
    "RedisLockRequest",
    "LockStore",
    "LockError",
    "LockTimeoutError",
    "ExpiredError",
    "UnavailableError",
    "ConfigError",
    "CorruptRecordError",
    "QueueFullError",
    "InvalidIdError",
]
