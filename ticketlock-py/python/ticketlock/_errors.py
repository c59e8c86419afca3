"""The error classes of ticketlock, one per error kind.

All derive from `LockError`, which is Rasa's `rasa.core.lock_store.LockError`
when Rasa is importable (so Rasa's `except LockError` keeps working) and a
local class otherwise.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on the environment
    from rasa.core.lock_store import LockError as _Base
except Exception:  # ImportError, or a Rasa that fails to import
    _Base = Exception


class LockError(_Base):  # type: ignore[misc,valid-type]
    """A lock could not be taken, kept or released."""


class LockTimeoutError(LockError, TimeoutError):
    """The acquire timeout passed; the ticket was withdrawn."""

    conversation_id: str
    waited: float


class ExpiredError(LockError):
    """The ticket or lease is gone: the work under the lock is not exclusive."""

    conversation_id: str
    ticket: int


class UnavailableError(LockError, ConnectionError):
    """The store did not answer within `socket_timeout`; retry later."""

    backend: str


class ConfigError(LockError, ValueError):
    """The configuration is invalid; `key` names the setting at fault."""

    key: str


class CorruptRecordError(LockError):
    """A stored record could not be read; `key` is its storage key."""

    key: str


class QueueFullError(LockError):
    """The conversation's queue is full; nothing was issued. Retry later."""

    conversation_id: str
    limit: int


class InvalidIdError(LockError, ValueError):
    """The conversation id cannot be used (empty, or longer than 256 KiB)."""

    conversation_id: str


__all__ = [
    "LockError",
    "LockTimeoutError",
    "ExpiredError",
    "UnavailableError",
    "ConfigError",
    "CorruptRecordError",
    "QueueFullError",
    "InvalidIdError",
]
