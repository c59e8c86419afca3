"""A mixed fleet on one Redis: Rasa's own RedisLockStore and ours share the
same records, so a deployment can switch server by server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def stores(server):
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import EndpointConfig

    def make(store_type):
        return LockStore.create(
            EndpointConfig(url="127.0.0.1", port=server.port, db=1, type=store_type)
        )

    return make("redis"), make("ticketlock.rasa.RedisLockStore")


def test_ours_holding_blocks_rasa_and_rasa_holding_blocks_ours(rasa, redis_server):
    theirs, ours = stores(redis_server)
    events = []

    async def hold(store, name, ready):
        async with store.lock("mixed", wait_time_in_seconds=0.01):
            ready.set()
            await asyncio.sleep(0.15)
            events.append(f"{name} leaves")

    async def wait(store, name, ready):
        await ready.wait()
        async with store.lock("mixed", wait_time_in_seconds=0.01):
            events.append(f"{name} enters")

    async def main(holder, waiter):
        ready = asyncio.Event()
        await asyncio.gather(hold(holder[0], holder[1], ready), wait(waiter[0], waiter[1], ready))

    asyncio.run(main((ours, "ours"), (theirs, "rasa")))
    assert events == ["ours leaves", "rasa enters"]
    events.clear()
    asyncio.run(main((theirs, "rasa"), (ours, "ours")))
    assert events == ["rasa leaves", "ours enters"]
    assert redis_server.client().get("lock:mixed") is None


def test_a_fleet_of_rasa_and_ours_processes(rasa, redis_server, tmp_path):
    """Two of Rasa's processes and two of ours on the same three
    conversations, 40 messages each, four in flight per process.

    Rasa's store writes whole records from stale reads and deletes records
    it thinks empty, so a Rasa process can remove a ticket of ours, even a
    holder's, and let a second holder of ours in: ticketlock cannot close
    Rasa's races from the other side (switch every server to close them).
    What ours guarantees here: every section of ours ends (served, or a
    LockError), and a holder of ours that was overlapped by another of ours
    is told so (its lease was gone at release: `guard.is_lost()`, and the
    Rasa store logs a warning).
    """
    kinds = ["rasa", "ours", "rasa", "ours"]
    procs = []
    for i, kind in enumerate(kinds):
        out = tmp_path / f"{i}.txt"
        args = [sys.executable, os.path.join(HERE, "fleet_worker.py"), kind, str(redis_server.port), "40", "3", str(out)]
        procs.append((out, subprocess.Popen(args)))
    try:
        for _, p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    sections = []
    errors = {}
    for (out, _), kind in zip(procs, kinds):
        for line in out.read_text().splitlines():
            parts = line.split()
            if parts[0] == "errors":
                errors[kind] = errors.get(kind, 0) + int(parts[1])
            else:
                kind_, pid, conversation, entered, left, lost = parts
                sections.append((kind_, int(pid), conversation, int(entered), int(left), lost == "1"))
    ours = [s for s in sections if s[0] == "ours"]
    assert len(ours) + errors.get("ours", 0) == 80
    by_conversation = {}
    for s in sections:
        by_conversation.setdefault(s[2], []).append(s)
    silent = []
    counts = {"ours-ours": 0, "with-rasa": 0}
    for conversation in by_conversation.values():
        conversation.sort(key=lambda s: s[3])
        for i, a in enumerate(conversation):
            for b in conversation[i + 1 :]:
                if b[3] >= a[4]:
                    break
                if a[0] == b[0] == "ours":
                    counts["ours-ours"] += 1
                    if not a[5]:
                        silent.append((a, b))
                else:
                    counts["with-rasa"] += 1
    print(f"fleet: {len(sections)} sections, overlaps {counts}, errors {errors}")
    assert silent == [], f"holders of ours overlapped without being told: {silent}"
