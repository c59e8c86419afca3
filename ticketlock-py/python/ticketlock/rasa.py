"""Drop-in lock stores for Rasa: ``lock_store: type: ticketlock.rasa.RedisLockStore``.

Rasa builds a store of an unknown ``type`` as ``cls(endpoint_config=config)``;
these classes read every setting of the ``lock_store:`` section from
``config.url`` and ``config.kwargs`` (keyword arguments work too, as for
Rasa's own ``RedisLockStore(host=..., port=...)``). They subclass Rasa's
``rasa.core.lock_store.LockStore`` when Rasa is importable and work without
it. ``lock()`` has Rasa's signature and returns an async context manager
(the native ``ticketlock.LockRequest`` or ``RedisLockRequest``, where Rasa's is an
``@asynccontextmanager``); the record-level methods have Rasa's names and
return types.

What differs from Rasa's stores: every operation is atomic; waiting is
push-woken (``wait_time_in_seconds`` only bounds the pause after a wake-up
that was lost or a release by a Rasa process); ticket numbers are never
reused; ``cleanup`` removes the ticket and an empty record in one step; the
lifetime counts from acquisition; ``lock()`` yields a ``ticketlock.Guard``
(Rasa yields a ``TicketLock``, which Rasa itself never uses).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from typing import Any, Deque, Dict, Iterable, Optional, Text, Tuple

from . import _core
from ._errors import ConfigError, LockError

logger = logging.getLogger(__name__)

try:  # pragma: no cover - depends on the environment
    from rasa.core.lock import Ticket as _TicketBase
    from rasa.core.lock import TicketLock as _TicketLockBase
    from rasa.core.lock_store import LockStore as _LockStoreBase

    HAVE_RASA = True
except Exception:  # ImportError, or a Rasa that fails to import
    _TicketBase = object  # type: ignore[assignment,misc]
    _TicketLockBase = object  # type: ignore[assignment,misc]
    _LockStoreBase = object  # type: ignore[assignment,misc]
    HAVE_RASA = False

NO_TICKET_ISSUED = -1
DEFAULT_LOCK_LIFETIME = 60


def _get_lock_lifetime() -> int:
    """Rasa's default lifetime: ``TICKET_LOCK_LIFETIME`` or 60 (bad values
    are reported by the store, naming the variable)."""
    try:
        return int(os.environ.get("TICKET_LOCK_LIFETIME", 0)) or DEFAULT_LOCK_LIFETIME
    except ValueError:
        return DEFAULT_LOCK_LIFETIME


LOCK_LIFETIME = _get_lock_lifetime()


class Ticket(_TicketBase):  # type: ignore[misc,valid-type]
    """A place in a conversation's queue (Rasa's ``Ticket``)."""

    def __init__(self, number: int, expires: float) -> None:
        self.number = number
        self.expires = expires

    def has_expired(self) -> bool:
        return time.time() > self.expires

    def as_dict(self) -> Dict[Text, Any]:
        return dict(number=self.number, expires=self.expires)

    def dumps(self) -> Text:
        return json.dumps(self.as_dict())

    @classmethod
    def from_dict(cls, data: Dict[Text, Any]) -> "Ticket":
        return cls(number=data["number"], expires=data["expires"])

    def __repr__(self) -> Text:
        return f"Ticket(number: {self.number}, expires: {self.expires})"


class TicketLock(_TicketLockBase):  # type: ignore[misc,valid-type]
    """A conversation's queue of tickets, with Rasa's attributes and methods.

    Unlike Rasa's, :meth:`issue_ticket` never reuses a number: it counts on
    from the highest number the record has seen, also after that ticket
    expired or was removed.
    """

    def __init__(self, conversation_id: Text, tickets: Optional[Deque[Ticket]] = None) -> None:
        self.conversation_id = conversation_id
        self.tickets: Deque[Any] = tickets or deque()
        self._issued_through: Optional[int] = None
        self._epoch: Optional[int] = None

    @classmethod
    def _from_record(
        cls, record: Tuple[str, Iterable[Tuple[int, float]], Optional[int], Optional[int]]
    ) -> "TicketLock":
        conversation_id, tickets, last_issued, epoch = record
        lock = cls(conversation_id, deque(Ticket(n, e) for n, e in tickets))
        lock._issued_through = last_issued
        lock._epoch = epoch
        return lock

    @classmethod
    def from_dict(cls, data: Dict[Text, Any]) -> "TicketLock":
        tickets = [Ticket.from_dict(json.loads(d)) for d in data.get("tickets", [])]
        lock = cls(data.get("conversation_id"), deque(tickets))  # type: ignore[arg-type]
        lock._issued_through = data.get("last_issued")
        lock._epoch = data.get("epoch")
        return lock

    def dumps(self) -> Text:
        tickets = [ticket.dumps() for ticket in self.tickets]
        return json.dumps(dict(conversation_id=self.conversation_id, tickets=tickets))

    def is_locked(self, ticket_number: int) -> bool:
        return self.now_serving != ticket_number

    def issue_ticket(self, lifetime: float) -> int:
        self.remove_expired_tickets()
        highest = max(
            [t.number for t in self.tickets]
            + ([self._issued_through] if self._issued_through is not None else [])
            + [NO_TICKET_ISSUED]
        )
        number = highest + 1
        self._issued_through = number
        self.tickets.append(Ticket(number, time.time() + lifetime))
        return number

    def remove_expired_tickets(self) -> None:
        for ticket in list(self.tickets):
            if ticket.has_expired():
                self.tickets.remove(ticket)

    @property
    def last_issued(self) -> int:
        number = self._ticket_number_for(-1)
        return number if number is not None else NO_TICKET_ISSUED

    @property
    def now_serving(self) -> Optional[int]:
        return self._ticket_number_for(0) or 0

    def _ticket_number_for(self, ticket_index: int) -> Optional[int]:
        self.remove_expired_tickets()
        try:
            return self.tickets[ticket_index].number
        except IndexError:
            return None

    def _ticket_for_ticket_number(self, ticket_number: int) -> Optional[Ticket]:
        self.remove_expired_tickets()
        return next((t for t in self.tickets if t.number == ticket_number), None)

    def is_someone_waiting(self) -> bool:
        return len(self.tickets) > 0

    def remove_ticket_for(self, ticket_number: int) -> None:
        ticket = self._ticket_for_ticket_number(ticket_number)
        if ticket:
            self.tickets.remove(ticket)


def _section(endpoint_config: Any, kwargs: Dict[str, Any], store_type: str) -> Dict[str, Any]:
    """The ``lock_store:`` settings from Rasa's ``EndpointConfig`` and kwargs."""
    section: Dict[str, Any] = {}
    if endpoint_config is not None:
        url = getattr(endpoint_config, "url", None)
        if url is not None:
            section["url"] = url
        section.update(getattr(endpoint_config, "kwargs", None) or {})
    section.update(kwargs)
    section.pop("store_type", None)
    section["type"] = store_type
    return section


def _build(section: Dict[str, Any]) -> _core.LockStore:
    # JSON is YAML: the settings go through the same parser (and the same
    # checks, errors naming `lock_store.<key>`) as an endpoints.yml file.
    text = json.dumps({"lock_store": section}, default=str)
    return _core.LockStore.from_endpoints_yaml(text)


class _TicketLockStore(_LockStoreBase):  # type: ignore[misc,valid-type]
    """The part shared by both stores: Rasa's ``LockStore`` API over a
    ``ticketlock.LockStore``."""

    _store: _core.LockStore

    @staticmethod
    def create_lock(conversation_id: Text) -> TicketLock:
        return TicketLock(conversation_id)

    def lock(
        self,
        conversation_id: Text,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> "_core.LockRequest | _core.RedisLockRequest":
        """Waits its turn for the lock of ``conversation_id`` and holds it
        inside ``async with``; fair, FIFO and push-woken. Cancelling the
        waiting task withdraws the ticket. Raises a ``LockError`` subclass
        when the ticket cannot be issued or is lost while waiting.

        Returns the native ``ticketlock.LockRequest`` (``RedisLockRequest``
        on Redis; an async context
        manager, as Rasa's ``@asynccontextmanager`` is), without a generator
        around it. As in Rasa, the end of a lock whose lease ran out is not
        an error of the message it served: it is logged as a warning."""
        return self._store.lock(
            conversation_id,
            lifetime=lock_lifetime,
            wait_time=wait_time_in_seconds,
            warn_if_lost=True,
        )

    def get_lock(self, conversation_id: Text) -> Optional[TicketLock]:
        record = self._store.get_record(conversation_id)
        return None if record is None else TicketLock._from_record(record)

    def delete_lock(self, conversation_id: Text) -> None:
        self._store.delete_lock(conversation_id)

    def save_lock(self, lock: Any) -> None:
        tickets = [(int(t.number), float(t.expires)) for t in lock.tickets]
        self._store.save_record(
            lock.conversation_id,
            tickets,
            getattr(lock, "_issued_through", None),
            getattr(lock, "_epoch", None),
        )

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        return self._store.issue_ticket(conversation_id, lock_lifetime)

    def update_lock(self, conversation_id: Text) -> None:
        self._store.update_lock(conversation_id)

    def get_or_create_lock(self, conversation_id: Text) -> TicketLock:
        return self.get_lock(conversation_id) or self.create_lock(conversation_id)

    def is_someone_waiting(self, conversation_id: Text) -> bool:
        return self._store.is_someone_waiting(conversation_id)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self._store.finish_serving(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Removes the ticket, and the record when no one is waiting, in one
        atomic step (Rasa takes two, and can delete a ticket issued between
        them)."""
        self._store.finish_serving(conversation_id, ticket_number)

    @property
    def store(self) -> _core.LockStore:
        """The ``ticketlock.LockStore`` underneath."""
        return self._store


class RedisLockStore(_TicketLockStore):
    """Rasa's Redis lock store, atomic and fair: ``type: ticketlock.rasa.RedisLockStore``.

    Reads ``url`` (or ``host``), ``port``, ``db``, ``username``, ``password``,
    ``use_ssl``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``,
    ``key_prefix``, ``socket_timeout``, ``deployment_mode``, ``endpoints``,
    ``sentinel_service``, ``min_replicas_ack`` and
    ``min_replicas_ack_timeout``. Connects in the constructor: a server that
    does not answer within ``socket_timeout`` raises ``UnavailableError``, a
    ``ConnectionError``, which Rasa's factory reports as
    ``ConnectionException``.
    """

    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        self._store = _build(_section(endpoint_config, kwargs, "redis"))
        super().__init__()

    @property
    def key_prefix(self) -> str:
        """The prefix of every key, as Rasa's store has it (``lock:`` or
        ``<prefix>:lock:``)."""
        key = self._store.key_for("x") or "lock:x"
        return key[:-1]


class InMemoryLockStore(_TicketLockStore):
    """A lock store in this process's memory: ``type: ticketlock.rasa.InMemoryLockStore``.

    It locks nothing across processes, so it refuses ``SANIC_WORKERS`` > 1.
    """

    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        workers = os.environ.get("SANIC_WORKERS", "").strip()
        try:
            many = bool(workers) and int(workers) > 1
        except ValueError:
            many = False
        if many:
            error = ConfigError(
                f"invalid lock store configuration: `SANIC_WORKERS`: {workers} workers would "
                "each have their own in-memory lock store, which locks nothing across them; "
                "use ticketlock.rasa.RedisLockStore, or set SANIC_WORKERS=1"
            )
            error.key = "SANIC_WORKERS"
            raise error
        # Nothing to configure in memory; the lifetime comes from
        # TICKET_LOCK_LIFETIME, as in Rasa.
        self._store = _core.LockStore.in_memory()
        super().__init__()


__all__ = [
    "HAVE_RASA",
    "LOCK_LIFETIME",
    "LockError",
    "Ticket",
    "TicketLock",
    "RedisLockStore",
    "InMemoryLockStore",
]
