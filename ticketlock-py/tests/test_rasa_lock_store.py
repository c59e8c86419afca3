"""Rasa's own lock store tests (Rasa 3.6, tests/core/test_lock_store.py),
written anew and run on Rasa's stores and ours alike.

Rasa's stores are Rasa's code from its wheel; ours are built through Rasa's
real factory, `LockStore.create(EndpointConfig(type="ticketlock.rasa..."))`.
Where ours deliberately differs, the test says so and checks what ours does.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from contextlib import asynccontextmanager

import pytest

STORES = ["rasa-memory", "rasa-redis", "ours-memory", "ours-redis"]
REDIS_STORES = ["rasa-redis", "ours-redis"]


def make_store(kind: str, server=None, **settings):
    from rasa.core.lock_store import InMemoryLockStore, LockStore
    from rasa.utils.endpoints import EndpointConfig

    if kind == "rasa-memory":
        return InMemoryLockStore()
    if kind == "ours-memory":
        return LockStore.create(EndpointConfig(type="ticketlock.rasa.InMemoryLockStore"))
    store_type = "redis" if kind == "rasa-redis" else "ticketlock.rasa.RedisLockStore"
    if "port" not in settings:
        settings["port"] = server.port
    settings.setdefault("db", 1)
    return LockStore.create(EndpointConfig(url="127.0.0.1", type=store_type, **settings))


def is_ours(kind: str) -> bool:
    return kind.startswith("ours")


@pytest.fixture(params=STORES)
def kind(request, rasa) -> str:
    return request.param


@pytest.fixture
def lock_store(kind, request):
    server = request.getfixturevalue("redis_server") if kind.endswith("redis") else None
    return make_store(kind, server)


@pytest.fixture(params=["rasa", "ours"])
def ticket_lock_class(request, rasa):
    if request.param == "rasa":
        from rasa.core.lock import TicketLock
    else:
        from ticketlock.rasa import TicketLock
    return request.param, TicketLock


def test_our_stores_are_rasas_lock_stores(rasa, redis_server):
    from rasa.core.lock_store import LockError, LockStore

    import ticketlock
    import ticketlock.rasa

    for kind in ("ours-memory", "ours-redis"):
        store = make_store(kind, redis_server)
        assert isinstance(store, LockStore), kind
        assert type(store).__module__ == "ticketlock.rasa"
    assert issubclass(ticketlock.rasa.RedisLockStore, LockStore)
    for error in (ticketlock.LockTimeoutError, ticketlock.UnavailableError, ticketlock.ConfigError):
        assert issubclass(error, LockError)
    assert ticketlock.LockError is ticketlock.rasa.LockError


def test_issue_ticket(ticket_lock_class):
    _, TicketLock = ticket_lock_class
    lock = TicketLock("my id")
    ticket_0 = lock.issue_ticket(10)
    assert ticket_0 == 0
    assert lock.last_issued == ticket_0
    assert lock.now_serving == ticket_0
    ticket_1 = lock.issue_ticket(10)
    assert ticket_1 == 1
    assert lock.last_issued == ticket_1
    assert lock.now_serving == ticket_0


def test_remove_expired_tickets(ticket_lock_class):
    _, TicketLock = ticket_lock_class
    lock = TicketLock("my id")
    for lifetime in (0.01, 10):
        lock.issue_ticket(lifetime)
    assert len(lock.tickets) == 2
    time.sleep(0.02)
    lock.remove_expired_tickets()
    assert len(lock.tickets) == 1
    assert lock.tickets[0].number == 1


def test_create_lock_store(kind, lock_store):
    conversation_id = "my id 0"
    lock = lock_store.create_lock(conversation_id)
    lock_store.save_lock(lock)
    fetched = lock_store.get_lock(conversation_id)
    if is_ours(kind):
        # Ours keeps no empty records (an empty queue is no record): the
        # record appears with its first ticket.
        assert fetched is None
        lock_store.issue_ticket(conversation_id, 10)
        fetched = lock_store.get_lock(conversation_id)
    assert fetched
    assert fetched.conversation_id == conversation_id


def test_serve_ticket(kind, lock_store):
    conversation_id = "my id 1"
    lock = lock_store.create_lock(conversation_id)
    lock_store.save_lock(lock)

    ticket_0 = lock_store.issue_ticket(conversation_id, 10)
    assert ticket_0 == 0
    lock = lock_store.get_lock(conversation_id)
    assert lock.last_issued == ticket_0
    assert lock.now_serving == ticket_0
    assert lock.is_someone_waiting()

    ticket_1 = lock_store.issue_ticket(conversation_id, 10)
    assert ticket_1 == 1
    lock_store.finish_serving(conversation_id, ticket_0)
    lock = lock_store.get_lock(conversation_id)
    assert lock.last_issued == ticket_1
    assert lock.now_serving == ticket_1
    assert lock.is_someone_waiting()

    lock_store.finish_serving(conversation_id, ticket_1)
    lock = lock_store.get_lock(conversation_id)
    if is_ours(kind):
        # Ours drops the record with its last ticket, in the same step.
        assert lock is None
        assert not lock_store.is_someone_waiting(conversation_id)
    else:
        assert not lock.is_someone_waiting()


def test_lock_expiration(kind, lock_store):
    conversation_id = "my id 2"
    lock = lock_store.create_lock(conversation_id)
    lock_store.save_lock(lock)

    ticket = lock.issue_ticket(10)
    assert ticket == 0
    assert not lock._ticket_for_ticket_number(ticket).has_expired()

    ticket = lock.issue_ticket(0.00001)
    time.sleep(0.00002)
    assert ticket == 1
    assert lock._ticket_for_ticket_number(ticket) is None

    if is_ours(kind):
        # Deliberate difference: numbers are never reused (Rasa gives 1 again,
        # and a waiter whose ticket 1 expired would enter with the newcomer).
        assert lock.issue_ticket(10) == 2
    else:
        assert lock.issue_ticket(10) == 1


def test_store_lock_expiration_never_reuses_numbers_on_ours(kind, lock_store):
    """The same facts through the store: Rasa reuses an expired number."""
    conversation_id = "my id 2b"
    assert lock_store.issue_ticket(conversation_id, 10) == 0
    assert lock_store.issue_ticket(conversation_id, 0.02) == 1
    time.sleep(0.05)
    expected = 2 if is_ours(kind) else 1
    assert lock_store.issue_ticket(conversation_id, 10) == expected


def test_multiple_conversation_ids(kind, lock_store):
    """Several conversations at once: each is served one at a time, and
    they do not wait for one another."""
    inside = {}
    overlaps = []
    handled = []

    async def handle(conversation_id: str, n: int) -> None:
        async with lock_store.lock(conversation_id, wait_time_in_seconds=0.01):
            if inside.get(conversation_id):
                overlaps.append(conversation_id)
            inside[conversation_id] = True
            await asyncio.sleep(0.005)
            inside[conversation_id] = False
            handled.append((conversation_id, n))

    async def main() -> None:
        await asyncio.gather(*(handle(f"c{i % 5}", i) for i in range(20)))

    asyncio.run(main())
    assert overlaps == []
    assert sorted(handled) == sorted((f"c{i % 5}", i) for i in range(20))


def test_message_order(kind, lock_store):
    """Messages of one conversation are handled in the order they came."""
    handled = []

    async def handle(n: int) -> None:
        async with lock_store.lock("some id", wait_time_in_seconds=0.01):
            await asyncio.sleep(0.002)
            handled.append(n)

    async def main() -> None:
        tasks = []
        for n in range(8):
            tasks.append(asyncio.ensure_future(handle(n)))
            await asyncio.sleep(0.001)  # arrival order
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert handled == list(range(8))


def test_lock_error(kind, lock_store):
    """A holder that outlives its lifetime (0.2 s, held 0.8 s). Rasa's test
    uses 0.01 s and 0.5 s; a waiter of ours that cannot renew its ticket
    within 0.01 s (a loaded machine) loses it, as it should, so the
    lifetime here leaves room for the waiter's keep-alive."""
    from rasa.core.lock_store import LockError

    lock_lifetime = 0.2
    wait_time_in_seconds = 0.01
    holdup = 0.8
    entered = []
    left = {}

    async def handle(n: int) -> None:
        async with lock_store.lock(
            "some id", lock_lifetime=lock_lifetime, wait_time_in_seconds=wait_time_in_seconds
        ) as held:
            entered.append((n, time.monotonic(), held))
            await asyncio.sleep(holdup)
            left[n] = time.monotonic()

    async def main() -> None:
        await asyncio.gather(*(handle(n) for n in range(2)))

    if not is_ours(kind):
        # Rasa: the second message's ticket expires too; when the first ends,
        # its cleanup deletes the record and the second fails (a dropped
        # message).
        with pytest.raises(LockError):
            asyncio.run(main())
        return
    # Deliberate difference: a waiter keeps its ticket alive, so the second
    # message is served once the first's lease ran out (no dropped message),
    # and the first holder learns it lost the lock.
    asyncio.run(main())
    # Both arrive at once: which one is served first is the store's order.
    assert sorted(n for n, _, _ in entered) == [0, 1]
    first, second = entered
    assert second[1] < left[first[0]], "the second waited for the holder's exit, not its lease"
    assert entered[0][2].is_lost()


def test_lock_lifetime_environment_variable(kind, request, monkeypatch):
    import rasa.core.lock_store

    import ticketlock.rasa

    monkeypatch.delenv("TICKET_LOCK_LIFETIME", raising=False)
    assert rasa.core.lock_store._get_lock_lifetime() == 60
    assert ticketlock.rasa._get_lock_lifetime() == 60
    monkeypatch.setenv("TICKET_LOCK_LIFETIME", "123")
    assert rasa.core.lock_store._get_lock_lifetime() == 123
    assert ticketlock.rasa._get_lock_lifetime() == 123
    if is_ours(kind):
        server = request.getfixturevalue("redis_server") if kind.endswith("redis") else None
        store = make_store(kind, server)
        assert store.store.default_lifetime == 123
        ticket = store.issue_ticket("life", 123)
        (expires,) = [t.expires for t in store.get_lock("life").tickets if t.number == ticket]
        assert 120 < expires - time.time() <= 123.5


@pytest.mark.parametrize("kind", REDIS_STORES)
def test_redis_lock_store_timeout(kind, rasa, own_redis):
    """A Redis that does not answer: `LockError`, within the socket timeout."""
    from rasa.core.lock_store import LockError

    store = make_store(kind, own_redis, socket_timeout=0.5)
    own_redis.pause()
    try:
        started = time.monotonic()

        async def main() -> None:
            async with store.lock("some sender"):
                pass

        with pytest.raises(LockError) as raised:
            asyncio.run(main())
        waited = time.monotonic() - started
        if is_ours(kind):
            import ticketlock

            assert isinstance(raised.value, ticketlock.UnavailableError)
            # Bounds a hang, not a speed: 0.5 s timeout, generous slack. (Rasa's
            # redis-py client retries, so it takes several timeouts.)
            assert waited < 3, f"waited {waited:.1f} s"
    finally:
        own_redis.resume()


@pytest.mark.parametrize("kind", REDIS_STORES)
def test_redis_lock_store_with_invalid_prefix(kind, rasa, redis_server):
    store = make_store(kind, redis_server, key_prefix="asdf!!!")
    assert store.key_prefix == "lock:"
    store.issue_ticket("c", 10)
    assert redis_server.client().get("lock:c") is not None


@pytest.mark.parametrize("kind", REDIS_STORES)
def test_redis_lock_store_with_valid_prefix(kind, rasa, redis_server):
    store = make_store(kind, redis_server, key_prefix="chatbot42")
    assert store.key_prefix == "chatbot42:lock:"
    store.issue_ticket("c", 10)
    client = redis_server.client()
    assert client.get("chatbot42:lock:c") is not None
    assert client.get("lock:c") is None
    # Both stores read the other's records.
    other = make_store("ours-redis" if kind == "rasa-redis" else "rasa-redis", redis_server, key_prefix="chatbot42")
    lock = other.get_lock("c")
    assert [t.number for t in lock.tickets] == [0]


@pytest.mark.parametrize("kind", REDIS_STORES)
def test_lock_store_connection_exception(kind, rasa, monkeypatch):
    from rasa.core.lock_store import RedisLockStore
    from rasa.shared.exceptions import ConnectionException

    from conftest import closed_port

    if kind == "rasa-redis":
        # Rasa's store connects lazily; Rasa's test makes its constructor fail.
        def refuse(*args, **kwargs):
            raise ConnectionError("refused")

        monkeypatch.setattr(RedisLockStore, "__init__", refuse)
    # Ours connects in the constructor: a closed port is refused at once.
    with pytest.raises(ConnectionException):
        make_store(kind, None, port=closed_port(), socket_timeout=1)


def test_waiting_lock(kind, lock_store):
    """A waiter enters only after the holder leaves."""
    events = []

    async def holder(ready: asyncio.Event) -> None:
        async with lock_store.lock("wait id", wait_time_in_seconds=0.01):
            ready.set()
            await asyncio.sleep(0.1)
            events.append("holder leaves")

    async def waiter(ready: asyncio.Event) -> None:
        await ready.wait()
        assert lock_store.is_someone_waiting("wait id")
        async with lock_store.lock("wait id", wait_time_in_seconds=0.01):
            events.append("waiter enters")

    async def main() -> None:
        ready = asyncio.Event()
        await asyncio.gather(holder(ready), waiter(ready))

    asyncio.run(main())
    assert events == ["holder leaves", "waiter enters"]
    assert not lock_store.is_someone_waiting("wait id")


@pytest.mark.parametrize("store_type", ["redis", "ticketlock.rasa.RedisLockStore"])
def test_lock_store_from_endpoint_config(store_type, rasa, redis_server, tmp_path, monkeypatch):
    """endpoints.yml -> Rasa's read_endpoint_config -> Rasa's factory."""
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import read_endpoint_config

    monkeypatch.setenv("LOCK_PORT", str(redis_server.port))
    path = tmp_path / "endpoints.yml"
    path.write_text(
        "tracker_store:\n  type: in_memory\n"
        f"lock_store:\n  type: {store_type}\n  url: 127.0.0.1\n  port: ${{LOCK_PORT}}\n"
        "  db: 3\n  key_prefix: bot\n"
    )
    store = LockStore.create(read_endpoint_config(str(path), "lock_store"))
    assert isinstance(store, LockStore)
    if store_type == "redis":
        assert type(store).__module__ == "rasa.core.lock_store"
    else:
        assert type(store).__module__ == "ticketlock.rasa"

    async def main() -> None:
        async with store.lock("from file"):
            assert redis_server.client(3).get("bot:lock:from file") is not None

    asyncio.run(main())
    assert redis_server.client(3).get("bot:lock:from file") is None


def test_cancelling_a_waiter_withdraws_its_ticket(kind, lock_store):
    """A message handler cancelled while it waits leaves no ticket behind."""

    def numbers():
        lock = lock_store.get_lock("cancel me")
        return [] if lock is None else [t.number for t in lock.tickets]

    async def waiter() -> None:
        async with lock_store.lock("cancel me", wait_time_in_seconds=0.01):
            pytest.fail("entered a held lock")

    async def main() -> None:
        async with lock_store.lock("cancel me", wait_time_in_seconds=0.01):
            task = asyncio.ensure_future(waiter())
            while len(numbers()) < 2:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if is_ours(kind):
                lock_store.store.flush()  # the withdrawal's round trip on Redis
            assert numbers() == [0]

    asyncio.run(main())
    if is_ours(kind):
        lock_store.store.flush()
    assert numbers() == []


def traced(lock_store_class, spans):
    """`lock` wrapped as Rasa Pro's tracing instrumentation wraps it: an
    `@asynccontextmanager` that calls the original positionally, with
    Rasa's signature, inside a span (here a list of events)."""
    original = lock_store_class.lock

    @functools.wraps(original)
    @asynccontextmanager
    async def lock(self, conversation_id, lock_lifetime=60, wait_time_in_seconds=1):
        spans.append(("start", conversation_id))
        try:
            async with original(self, conversation_id, lock_lifetime, wait_time_in_seconds) as held:
                yield held
        finally:
            spans.append(("end", conversation_id))

    return lock


def test_lock_wrapped_by_tracing(kind, lock_store, monkeypatch):
    """Order, exclusivity and cancellation through the tracing wrapper."""
    spans = []
    monkeypatch.setattr(type(lock_store), "lock", traced(type(lock_store), spans))
    handled = []
    released = []
    inside = []

    async def handle(n: int) -> None:
        async with lock_store.lock("traced", wait_time_in_seconds=0.01):
            inside.append(n)
            assert inside == [n]
            await asyncio.sleep(0.002)
            inside.remove(n)
            handled.append(n)
        # Counted once its ticket is gone (a handled one still holds it).
        released.append(n)

    async def main() -> None:
        tasks = []
        for n in range(4):
            tasks.append(asyncio.ensure_future(handle(n)))
            await asyncio.sleep(0.001)  # arrival order
        cancelled = asyncio.ensure_future(handle(99))
        # Until the fifth ticket is issued: the live ones and the released.
        while len(lock_store.get_lock("traced").tickets) + len(released) < 5:
            await asyncio.sleep(0.001)
        cancelled.cancel()
        await asyncio.gather(*tasks)
        with pytest.raises(asyncio.CancelledError):
            await cancelled

    asyncio.run(main())
    assert handled == [0, 1, 2, 3]
    assert spans.count(("start", "traced")) == spans.count(("end", "traced")) == 5
    if is_ours(kind):
        lock_store.store.flush()
    assert lock_store.get_lock("traced") is None or not lock_store.get_lock("traced").tickets
