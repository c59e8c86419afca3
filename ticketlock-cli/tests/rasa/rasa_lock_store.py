#!/usr/bin/env python3
"""Rasa 3.6's Redis lock store, ported for ticketlock's interoperability tests.

This is a port for tests only: it lets a test run "a process using Rasa's
record format" without installing Rasa. The logic follows Rasa 3.6's
rasa/core/lock.py (Ticket, TicketLock) and rasa/core/lock_store.py
(LockStore, RedisLockStore) step by step, defects included: every
operation is a separate GET, modify and SET from the client, expiry is by
this machine's clock, ticket numbers are the last live ticket's + 1, and
cleanup deletes the record in a second step when nobody waits. Only two
things are substituted, so that it needs nothing but the standard library:
redis-py is replaced by a minimal RESP client over a socket (GET, SET, DEL,
SELECT, AUTH), and Rasa's logging by nothing.

Command line (the test drives it):
  rasa_lock_store.py [--host H] [--port P] [--db N] [--username U]
                     [--password P] [--key-prefix K] COMMAND ...
  hold ID --name N --log FILE --witness DIR [--go FILE]
          [--lifetime S] [--wait-time S]
      lock(ID); inside, mkdir WITNESS (logs an overlap if it exists),
      append "enter N TICKET" to LOG, wait until GO exists, rmdir, append
      "exit N"; then cleanup, as Rasa's `async with lock_store.lock(...)`.
  turns ID --name N --log FILE --stop FILE [--lifetime S] [--wait-time S]
        [--inside S]
      lock(ID) again and again until STOP exists; inside, append
      "enter N TICKET NS" and, after --inside seconds, "exit N NS" to LOG
      (NS: time.time_ns(), for the test to find overlapping sections); a
      LockError is logged as "failed N ERROR" and the loop goes on.
  roundtrip ID   print TicketLock.from_dict(json.loads(GET key)).dumps()
  write ID NUMBER:EXPIRES ...   save_lock of a lock with these tickets
  issue ID --lifetime S         issue_ticket; print the number
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Deque, Dict, Optional, Text, Union

# --- rasa/core/lock.py -------------------------------------------------------

NO_TICKET_ISSUED = -1


class Ticket:
    def __init__(self, number: int, expires: float) -> None:
        self.number = number
        self.expires = expires

    def has_expired(self) -> bool:
        return time.time() > self.expires

    def as_dict(self) -> Dict[Text, Any]:
        return dict(number=self.number, expires=self.expires)

    def dumps(self) -> Text:
        """Return json dump of `Ticket` as dictionary."""
        return json.dumps(self.as_dict())

    @classmethod
    def from_dict(cls, data: Dict[Text, Union[int, float]]) -> "Ticket":
        """Creates `Ticket` from dictionary."""
        return cls(number=data["number"], expires=data["expires"])


class TicketLock:
    """Issues tickets in the order in which they are requested."""

    def __init__(
        self, conversation_id: Text, tickets: Optional[Deque[Ticket]] = None
    ) -> None:
        self.conversation_id = conversation_id
        self.tickets = tickets or deque()

    @classmethod
    def from_dict(cls, data: Dict[Text, Any]) -> "TicketLock":
        """Create `TicketLock` from dictionary."""
        tickets = [Ticket.from_dict(json.loads(d)) for d in data.get("tickets")]
        return cls(data.get("conversation_id"), deque(tickets))

    def dumps(self) -> Text:
        """Return json dump of `TicketLock`."""
        tickets = [ticket.dumps() for ticket in self.tickets]
        return json.dumps(dict(conversation_id=self.conversation_id, tickets=tickets))

    def is_locked(self, ticket_number: int) -> bool:
        """Return whether `ticket_number` is locked (not served now)."""
        return self.now_serving != ticket_number

    def issue_ticket(self, lifetime: float) -> int:
        """Issue a new ticket and return its number."""
        self.remove_expired_tickets()
        number = self.last_issued + 1
        ticket = Ticket(number, time.time() + lifetime)
        self.tickets.append(ticket)
        return number

    def remove_expired_tickets(self) -> None:
        """Remove expired tickets."""
        # iterate over copy of self.tickets so we can remove items
        for ticket in list(self.tickets):
            if ticket.has_expired():
                self.tickets.remove(ticket)

    @property
    def last_issued(self) -> int:
        """Number of the ticket that was last added, or NO_TICKET_ISSUED."""
        ticket_number = self._ticket_number_for(-1)
        if ticket_number is not None:
            return ticket_number
        return NO_TICKET_ISSUED

    @property
    def now_serving(self) -> Optional[int]:
        """Number of the ticket served next; 0 if no ticket exists."""
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
        """Whether the tickets queue has length greater than 0."""
        return len(self.tickets) > 0

    def remove_ticket_for(self, ticket_number: int) -> None:
        """Remove `Ticket` for `ticket_number`."""
        ticket = self._ticket_for_ticket_number(ticket_number)
        if ticket:
            self.tickets.remove(ticket)


# --- the substitute for redis-py -----------------------------------------------


class RedisError(Exception):
    pass


class Resp:
    """Just enough of a Redis client: one connection, one command at a time."""

    def __init__(self, host, port, db, username, password, socket_timeout):
        self.sock = socket.create_connection((host, port), timeout=socket_timeout)
        self.reader = self.sock.makefile("rb")
        if password is not None:
            if username is not None:
                self.command("AUTH", username, password)
            else:
                self.command("AUTH", password)
        self.command("SELECT", str(db))

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode("utf-8")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.reader.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)

    def get(self, key):
        return self.command("GET", key)

    def set(self, key, value):
        return self.command("SET", key, value)

    def delete(self, key):
        return self.command("DEL", key)


# --- rasa/core/lock_store.py ---------------------------------------------------

DEFAULT_LOCK_LIFETIME = 60
LOCK_LIFETIME = int(os.environ.get("TICKET_LOCK_LIFETIME", 0)) or DEFAULT_LOCK_LIFETIME
DEFAULT_SOCKET_TIMEOUT_IN_SECONDS = 10
DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX = "lock:"


class LockError(Exception):
    """Raised when a lock cannot be acquired."""


class LockStore:
    @staticmethod
    def create_lock(conversation_id: Text) -> TicketLock:
        return TicketLock(conversation_id)

    def get_lock(self, conversation_id: Text) -> Optional[TicketLock]:
        raise NotImplementedError

    def delete_lock(self, conversation_id: Text) -> None:
        raise NotImplementedError

    def save_lock(self, lock: TicketLock) -> None:
        raise NotImplementedError

    def issue_ticket(
        self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME
    ) -> int:
        """Issue new ticket for the lock of `conversation_id`, creating it if needed."""
        try:
            lock = self.get_or_create_lock(conversation_id)
            ticket = lock.issue_ticket(lock_lifetime)
            self.save_lock(lock)
            return ticket
        except Exception as e:
            raise LockError(f"Error while acquiring lock. Error:\n{e}")

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: Text,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncGenerator[TicketLock, None]:
        """Acquire lock with lifetime `lock_lifetime` for `conversation_id`."""
        ticket = self.issue_ticket(conversation_id, lock_lifetime)
        try:
            yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            self.cleanup(conversation_id, ticket)

    async def _acquire_lock(
        self, conversation_id: Text, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        while True:
            # fetch lock in every iteration because lock might no longer exist
            lock = self.get_lock(conversation_id)

            # exit loop if lock does not exist anymore (expired)
            if not lock:
                break

            # acquire lock if it isn't locked
            if not lock.is_locked(ticket):
                return lock

            # sleep and update lock
            await asyncio.sleep(wait_time_in_seconds)
            self.update_lock(conversation_id)

        raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")

    def update_lock(self, conversation_id: Text) -> None:
        """Fetch lock for `conversation_id`, remove expired tickets and save lock."""
        lock = self.get_lock(conversation_id)
        if lock:
            lock.remove_expired_tickets()
            self.save_lock(lock)

    def get_or_create_lock(self, conversation_id: Text) -> TicketLock:
        existing_lock = self.get_lock(conversation_id)
        if existing_lock:
            return existing_lock
        return self.create_lock(conversation_id)

    def is_someone_waiting(self, conversation_id: Text) -> bool:
        lock = self.get_lock(conversation_id)
        if lock:
            return lock.is_someone_waiting()
        return False

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove the ticket from the lock and save the lock."""
        lock = self.get_lock(conversation_id)
        if lock:
            lock.remove_ticket_for(ticket_number)
            self.save_lock(lock)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove lock for `conversation_id` if no one is waiting."""
        self.finish_serving(conversation_id, ticket_number)
        if not self.is_someone_waiting(conversation_id):
            self.delete_lock(conversation_id)


class RedisLockStore(LockStore):
    def __init__(
        self,
        host: Text = "localhost",
        port: int = 6379,
        db: int = 1,
        username: Optional[Text] = None,
        password: Optional[Text] = None,
        key_prefix: Optional[Text] = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_IN_SECONDS,
    ) -> None:
        self.red = Resp(host, int(port), int(db), username, password, socket_timeout)
        self.key_prefix = DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX
        if key_prefix:
            self._set_key_prefix(key_prefix)

    def _set_key_prefix(self, key_prefix: Text) -> None:
        if isinstance(key_prefix, str) and key_prefix.isalnum():
            self.key_prefix = key_prefix + ":" + DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX
        else:
            print(
                f"Omitting provided non-alphanumeric redis key prefix: '{key_prefix}'. "
                f"Using default '{self.key_prefix}' instead.",
                file=sys.stderr,
            )

    def get_lock(self, conversation_id: Text) -> Optional[TicketLock]:
        serialised_lock = self.red.get(self.key_prefix + conversation_id)
        if serialised_lock:
            return TicketLock.from_dict(json.loads(serialised_lock))
        return None

    def delete_lock(self, conversation_id: Text) -> None:
        self.red.delete(self.key_prefix + conversation_id)

    def save_lock(self, lock: TicketLock) -> None:
        self.red.set(self.key_prefix + lock.conversation_id, lock.dumps())


# --- the test driver -----------------------------------------------------------


def append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


async def hold(store, args):
    async with store.lock(args.id, args.lifetime, args.wait_time) as lock:
        try:
            os.mkdir(args.witness)
        except FileExistsError:
            append(args.log, f"overlap {args.name}")
        # The lock yielded is served: its head is our ticket.
        append(args.log, f"enter {args.name} {lock.now_serving}")
        deadline = time.monotonic() + 20
        while args.go and not os.path.exists(args.go) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        os.rmdir(args.witness)
        append(args.log, f"exit {args.name}")


async def turns(store, args):
    while not os.path.exists(args.stop):
        try:
            async with store.lock(args.id, args.lifetime, args.wait_time) as lock:
                append(args.log, f"enter {args.name} {lock.now_serving} {time.time_ns()}")
                await asyncio.sleep(args.inside)
                append(args.log, f"exit {args.name} {time.time_ns()}")
        except LockError as e:
            append(args.log, f"failed {args.name} {' '.join(str(e).split())}")


def main():
    p = argparse.ArgumentParser(description="Rasa 3.6's Redis lock store, for tests")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--db", type=int, default=1)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--key-prefix")
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hold")
    h.add_argument("id")
    h.add_argument("--name", required=True)
    h.add_argument("--log", required=True)
    h.add_argument("--witness", required=True)
    h.add_argument("--go")
    h.add_argument("--lifetime", type=float, default=LOCK_LIFETIME)
    h.add_argument("--wait-time", type=float, default=1)
    t = sub.add_parser("turns")
    t.add_argument("id")
    t.add_argument("--name", required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--stop", required=True)
    t.add_argument("--lifetime", type=float, default=LOCK_LIFETIME)
    t.add_argument("--wait-time", type=float, default=1)
    t.add_argument("--inside", type=float, default=0.01)
    r = sub.add_parser("roundtrip")
    r.add_argument("id")
    w = sub.add_parser("write")
    w.add_argument("id")
    w.add_argument("tickets", nargs="*")
    i = sub.add_parser("issue")
    i.add_argument("id")
    i.add_argument("--lifetime", type=float, default=LOCK_LIFETIME)
    args = p.parse_args()

    store = RedisLockStore(
        host=args.host,
        port=args.port,
        db=args.db,
        username=args.username,
        password=args.password,
        key_prefix=args.key_prefix,
    )
    if args.command == "hold":
        asyncio.run(hold(store, args))
    elif args.command == "turns":
        asyncio.run(turns(store, args))
    elif args.command == "roundtrip":
        raw = store.red.get(store.key_prefix + args.id)
        if raw is None:
            sys.exit(f"no record at {store.key_prefix + args.id!r}")
        sys.stdout.write(TicketLock.from_dict(json.loads(raw)).dumps())
    elif args.command == "write":
        tickets = deque()
        for t in args.tickets:
            number, expires = t.split(":", 1)
            tickets.append(Ticket(int(number), float(expires)))
        store.save_lock(TicketLock(args.id, tickets))
    elif args.command == "issue":
        print(store.issue_ticket(args.id, args.lifetime))


if __name__ == "__main__":
    main()
