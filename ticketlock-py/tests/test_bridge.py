"""The Python API over the Rust store: the fast path, cancellation,
timeouts, renewal, fork, and the errors of a bad configuration or a dead
server."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import ticketlock
from conftest import closed_port


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return ticketlock.LockStore.in_memory()
    server = request.getfixturevalue("redis_server")
    return ticketlock.LockStore.from_url(server.url() + "?socket_timeout=2")


def tickets(store, conversation_id):
    record = store.get_record(conversation_id)
    return [] if record is None else [n for n, _ in record[1]]


def test_a_free_lock_is_taken_in_the_first_step_without_suspending():
    store = ticketlock.LockStore.in_memory()

    async def main() -> None:
        request = store.lock("c")
        step = request.__aenter__()
        # A coroutine that suspended would return from send(); ours finishes.
        with pytest.raises(StopIteration) as done:
            step.send(None)
        guard = done.value.value
        assert isinstance(guard, ticketlock.Guard)
        assert (guard.conversation_id, guard.ticket) == ("c", 0)
        assert tickets(store, "c") == [0]
        await request.__aexit__(None, None, None)
        assert tickets(store, "c") == []

    asyncio.run(main())


def test_throw_or_close_on_a_waiting_step_withdraws_its_ticket(store):
    """The awaitable of `__aenter__` driven by hand: a held lock makes it
    suspend; `throw` (what a cancelled task does) and `close` drop the
    request, and a finished awaitable cannot be reused."""

    async def main() -> None:
        async with store.lock("thrown"):
            for end in ("throw", "close"):
                step = store.lock("thrown").__aenter__()
                # A coroutine (PyO3's in memory, ticketlock._wait's on Redis).
                assert asyncio.iscoroutine(step)
                # It suspends: a pending future of the loop to wait on, or
                # None (poll again soon) when woken while it was polled.
                yielded = step.send(None)
                assert yielded is None or (isinstance(yielded, asyncio.Future) and not yielded.done())
                while len(tickets(store, "thrown")) < 2:
                    await asyncio.sleep(0.001)
                if end == "throw":
                    with pytest.raises(asyncio.CancelledError):
                        step.throw(asyncio.CancelledError())
                else:
                    step.close()
                store.flush()
                assert tickets(store, "thrown") == [0]
                with pytest.raises(RuntimeError, match="already awaited"):
                    step.send(None)
        assert tickets(store, "thrown") == []

    asyncio.run(main())


def test_guard_facts_and_fencing_tokens_grow(store):
    async def main() -> None:
        async with store.lock("g") as first:
            assert first.conversation_id == "g"
            assert first.ticket == 0
            assert await first.is_held()
            assert not first.is_lost()
            await first.renew()
        async with store.lock("g") as second:
            assert second.fencing_token > first.fencing_token
        assert not await second.is_held()

    asyncio.run(main())


def test_waiters_enter_in_arrival_order_one_at_a_time(store):
    order = []
    inside = []

    async def worker(n: int) -> None:
        async with store.lock("fifo"):
            inside.append(n)
            assert len(inside) == 1, inside
            await asyncio.sleep(0.002)
            order.append(n)
            inside.remove(n)

    async def main() -> None:
        tasks = []
        for n in range(10):
            tasks.append(asyncio.ensure_future(worker(n)))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(10))


def test_cancelling_a_waiter_withdraws_its_ticket_at_once(store):
    async def main() -> None:
        async with store.lock("cancel"):
            waiter = asyncio.ensure_future(store.lock("cancel").__aenter__())
            while len(tickets(store, "cancel")) < 2:
                await asyncio.sleep(0.001)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            # Withdrawn when the request is dropped (on Redis by a round trip
            # started then; flush() waits for it).
            store.flush()
            assert tickets(store, "cancel") == [0]
            # asyncio.wait_for cancels the same way.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(store.lock("cancel").__aenter__(), 0.05)
            store.flush()
            assert tickets(store, "cancel") == [0]
        # The next comer is served at once: nothing withdrawn was left behind.
        async with store.lock("cancel", timeout=1) as guard:
            assert tickets(store, "cancel") == [guard.ticket]

    asyncio.run(main())


def test_timeout_raises_and_leaves_no_ticket(store):
    async def main() -> None:
        async with store.lock("t"):
            started = time.monotonic()
            with pytest.raises(ticketlock.LockTimeoutError) as raised:
                async with store.lock("t", timeout=0.1):
                    pytest.fail("entered a held lock")
            assert time.monotonic() - started >= 0.1
            assert raised.value.conversation_id == "t"
            assert isinstance(raised.value, TimeoutError)
            assert tickets(store, "t") == [0]

    asyncio.run(main())


def test_auto_renew_holds_past_the_lifetime(store):
    async def main() -> None:
        async with store.lock("renew", lifetime=0.3, auto_renew=True) as guard:
            await asyncio.sleep(1.0)  # more than three lifetimes
            assert await guard.is_held()
            with pytest.raises(ticketlock.LockTimeoutError):
                async with store.lock("renew", timeout=0.2):
                    pass
            assert not guard.is_lost()

    asyncio.run(main())


def test_without_renewal_the_lease_ends_after_the_lifetime(store):
    async def main() -> None:
        request = store.lock("lease", lifetime=0.2)
        guard = await request.__aenter__()
        async with store.lock("lease", timeout=2) as successor:
            assert successor.ticket == 1
        assert not await guard.is_held()
        assert guard.is_lost()
        with pytest.raises(ticketlock.ExpiredError):
            await guard.renew()
        with pytest.raises(ticketlock.ExpiredError):
            await request.__aexit__(None, None, None)

    asyncio.run(main())


def test_body_errors_propagate_and_release(store):
    async def main() -> None:
        with pytest.raises(KeyError):
            async with store.lock("body"):
                raise KeyError("boom")
        store.flush()
        assert tickets(store, "body") == []

    asyncio.run(main())


def test_fork_child_gets_its_own_runtime_and_leaves_the_parents_lock(redis_server):
    store = ticketlock.LockStore.from_url(redis_server.url())
    memory = ticketlock.LockStore.in_memory()
    request = store.lock("forked")
    mem_request = memory.lock("forked")

    async def take():
        return await request.__aenter__(), await mem_request.__aenter__()

    guard, _ = asyncio.run(take())
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            async def child() -> None:
                # The parent's lock holds in the child too, on Redis.
                try:
                    async with store.lock("forked", timeout=0.2):
                        raise SystemExit(10)
                except ticketlock.LockTimeoutError:
                    pass
                async with store.lock("child", timeout=2) as g:
                    assert g.ticket == 0
                # In memory, the child has a store of its own.
                async with memory.lock("forked", timeout=0.2):
                    pass

            asyncio.run(child())
            # The parent's guard belongs to the parent: using it fails.
            try:
                asyncio.run(guard.is_held())
                code = 11
            except RuntimeError as e:
                code = 0 if "fork" in str(e) else 12
        except BaseException as e:  # noqa: BLE001
            print("child failed:", repr(e), flush=True)
            code = code or 13
        finally:
            # Dropping the parent's guard must not release the parent's lock.
            del guard
            import gc

            gc.collect()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, f"child exited {os.WEXITSTATUS(status)}"

    async def after() -> None:
        assert await guard.is_held()
        await request.__aexit__(None, None, None)
        await mem_request.__aexit__(None, None, None)

    asyncio.run(after())
    assert tickets(store, "forked") == []


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: ticketlock.LockStore.from_url("redis://127.0.0.1:99999/1"), "url"),
        (lambda: ticketlock.LockStore.from_url("http://127.0.0.1/1"), "url"),
        (lambda: ticketlock.LockStore.from_endpoints_yaml("lock_store:\n  type: redis\n  port: abc\n"), "lock_store.port"),
        (lambda: ticketlock.LockStore.from_endpoints_yaml("lock_store:\n  type: mongo\n"), "lock_store.type"),
        (lambda: ticketlock.LockStore.from_endpoints_yaml("lock_store:\n  type: redis\n  socket_timeout: -1\n"), "lock_store.socket_timeout"),
        (lambda: ticketlock.LockStore.from_endpoints("/nonexistent/endpoints.yml"), "/nonexistent/endpoints.yml"),
        (lambda: ticketlock.LockStore.in_memory().lock("c", lifetime=-1), "lifetime"),
        (lambda: ticketlock.LockStore.in_memory().lock("c", timeout=float("nan")), "timeout"),
    ],
)
def test_bad_configuration_names_the_key(make, key):
    with pytest.raises(ticketlock.ConfigError) as raised:
        make()
    assert raised.value.key == key
    assert key in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_bad_configuration_through_rasas_constructor(rasa, monkeypatch):
    from rasa.utils.endpoints import EndpointConfig

    import ticketlock.rasa

    config = EndpointConfig(url="127.0.0.1", type="ticketlock.rasa.RedisLockStore", port="abc")
    with pytest.raises(ticketlock.ConfigError, match="lock_store.port") as raised:
        ticketlock.rasa.RedisLockStore(endpoint_config=config)
    assert raised.value.key == "lock_store.port"
    with pytest.raises(ticketlock.ConfigError, match="lock_store.username"):
        ticketlock.rasa.RedisLockStore(url="127.0.0.1", username="u")
    monkeypatch.setenv("SANIC_WORKERS", "4")
    with pytest.raises(ticketlock.ConfigError, match="SANIC_WORKERS") as raised:
        ticketlock.rasa.InMemoryLockStore()
    assert raised.value.key == "SANIC_WORKERS"
    monkeypatch.setenv("SANIC_WORKERS", "1")
    monkeypatch.setenv("TICKET_LOCK_LIFETIME", "soon")
    with pytest.raises(ticketlock.ConfigError, match="TICKET_LOCK_LIFETIME"):
        ticketlock.rasa.InMemoryLockStore()


def test_an_empty_id_is_refused():
    async def main() -> None:
        async with ticketlock.LockStore.in_memory().lock(""):
            pass

    with pytest.raises(ticketlock.InvalidIdError):
        asyncio.run(main())


def test_redis_down_is_unavailable_within_the_socket_timeout(own_redis):
    started = time.monotonic()
    with pytest.raises(ticketlock.UnavailableError) as raised:
        ticketlock.LockStore.from_url(f"redis://127.0.0.1:{closed_port()}/1?socket_timeout=0.5")
    assert isinstance(raised.value, ConnectionError)
    assert time.monotonic() - started < 0.5 + 2

    store = ticketlock.LockStore.from_url(own_redis.url() + "?socket_timeout=0.5")

    async def cycle(conversation_id="down") -> None:
        async with store.lock(conversation_id):
            pass

    asyncio.run(cycle())
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(ticketlock.UnavailableError):
            asyncio.run(cycle())
        # Bounds a hang (0.5 s socket timeout), generous slack for a busy machine.
        assert time.monotonic() - started < 0.5 + 2
    finally:
        own_redis.resume()
    # The same store works again. (Another conversation: the issue that timed
    # out was still queued in the paused server, which runs it on resume, and
    # that ticket holds "down" until its lifetime ends.)
    asyncio.run(cycle("up again"))
