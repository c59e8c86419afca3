"""Entering and leaving a lock on a remote store: coroutines over the native
steps of ``RedisLockRequest``, woken through one hub per event loop.

A step polls the Rust request once (the first poll of an entry or an exit
is made by tokio's worker, together with the others of the same loop
iteration: ``Hub._flush``). While it is pending, the coroutine
awaits a future of its loop; tokio's worker queues that future on the
loop's hub without the GIL and writes one byte to a socket the loop
watches, once for all the wake-ups that arrive before the loop drains them
(``_drain``). No Rust code runs while these coroutines wait, so a daemon
thread's loop that is still draining while the interpreter exits is ended
as CPython ends any daemon thread. A cancelled or closed coroutine drops
the Rust request at once, which withdraws its ticket.
"""

from __future__ import annotations

import os
import weakref
from asyncio import get_running_loop
from typing import Any

from . import _core

# One hub per event loop, gone with the loop (kept for the process when the
# loop takes no weak reference); the last one used is looked up first.
_hubs: "weakref.WeakKeyDictionary[Any, _core.Hub]" = weakref.WeakKeyDictionary()
_kept: "dict[Any, _core.Hub]" = {}
_last: "tuple[Any, Any]" = (None, None)


def _forget() -> None:
    """In a forked child: its loops get hubs of their own (a parent's socket
    pair is shared with the parent)."""
    global _hubs, _kept, _last
    _hubs, _kept, _last = weakref.WeakKeyDictionary(), {}, (None, None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def _drain(hub: _core.Hub) -> None:
    for future in hub.take():
        if not future.done():
            future.set_result(None)


def _hub(loop: Any) -> _core.Hub:
    global _last
    last_loop, hub = _last
    if last_loop is loop:
        return hub
    try:
        hub = _hubs.get(loop)
        hubs = _hubs
    except TypeError:
        hub = _kept.get(loop)
        hubs = _kept  # type: ignore[assignment]
    if hub is None:
        hub = _core.Hub()
        loop.add_reader(hub.fileno(), _drain, hub)
        hubs[loop] = hub
    _last = (loop, hub)
    return hub


# The first step of a request parks a future and leaves the poll that sends
# the request's command to the hub's flush (`...`: schedule it), which hands
# all the first polls of one loop iteration to tokio's worker at once. After
# a wake a step is polled without a future, since it is then mostly ready,
# and again with a fresh one only if it is not.


async def enter(request: Any) -> Any:
    loop = get_running_loop()
    hub = _hub(loop)
    step = request._enter_step
    future = loop.create_future()
    try:
        while True:
            guard = step(hub, future)
            if guard is None:
                pass
            elif guard is ...:
                loop.call_soon(hub._flush)
            else:
                return guard
            if future is None:
                future = loop.create_future()
            else:
                await future
                future = None
    except BaseException:
        request._enter_cancel()
        raise


async def exit(request: Any, failed: bool) -> bool:
    loop = get_running_loop()
    hub = _hub(loop)
    step = request._exit_step
    future = loop.create_future()
    try:
        while True:
            done = step(hub, future, failed)
            if done is None:
                pass
            elif done is ...:
                loop.call_soon(hub._flush)
            else:
                return done
            if future is None:
                future = loop.create_future()
            else:
                await future
                future = None
    except BaseException:
        request._exit_cancel()
        raise
