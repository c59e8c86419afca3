"""Interpreter exit with waiters pending: no crash, no hang, in 200 runs.

Each run is a fresh interpreter that leaves a held lock and waiting tasks
behind: in a loop it never closes (the coroutines are collected while the
interpreter finalizes), or in a daemon thread still waking waiters while
the main thread exits.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SCRIPT = r"""
import asyncio, sys, threading, time
import ticketlock

variant, url, conversation_id = sys.argv[1], sys.argv[2], sys.argv[3]
store = ticketlock.LockStore.in_memory() if variant == "memory" else ticketlock.LockStore.from_url(url)

async def waiter(i):
    async with store.lock(conversation_id, timeout=30):
        await asyncio.sleep(0.001)

async def main():
    holder = store.lock(conversation_id)
    await holder.__aenter__()
    for i in range(20):
        asyncio.ensure_future(waiter(i))
    await asyncio.sleep(0.005)
    if variant == "thread":
        # Let the waiters go one by one while the interpreter exits.
        asyncio.get_running_loop().call_later(0.002, lambda: asyncio.ensure_future(holder.__aexit__(None, None, None)))
        await asyncio.sleep(10)

if variant == "thread":
    t = threading.Thread(target=lambda: asyncio.new_event_loop().run_until_complete(main()), daemon=True)
    t.start()
    time.sleep(0.02)
else:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    # exit with the loop open, the holder held and 20 waiters pending
print("exiting")
"""

RUNS = 200

# What a daemon thread still taking a lock sees once the runtime stopped:
# an exception in that thread, not a crash.
STOPPED = "ticketlock: the interpreter is exiting and ticketlock's runtime has stopped"


def clean(variant: str, returncode: int, stdout: str, stderr: str) -> bool:
    if returncode != 0 or stdout.strip() != "exiting":
        return False  # a crash (signal, abort) or a hang (timeout) shows here
    if variant != "thread":
        return stderr.strip() == ""
    if "panic" in stderr or "Fatal Python error" in stderr:
        return False
    # Each exception raised in the thread is the runtime's clear refusal.
    raised = [line for line in stderr.splitlines() if re.match(r"^[A-Za-z_.]+(Error|Exception):", line)]
    return all(line.startswith("RuntimeError: " + STOPPED) for line in raised)


def test_exit_with_waiters_pending_never_crashes(redis_server):
    url = redis_server.url()
    variants = ["memory", "redis", "thread"]

    def run(i: int):
        variant = variants[i % len(variants)]
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, variant, url, f"exit-{i}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return variant, proc.returncode, proc.stdout, proc.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(RUNS)))
    bad = [r for r in results if not clean(*r)]
    assert not bad, f"{len(bad)} of {RUNS} runs failed; first: {bad[0]}"
