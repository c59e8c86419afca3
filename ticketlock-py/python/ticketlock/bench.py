"""Benchmarks of the Python package, with their baselines in the same run.

    python -m ticketlock.bench [--redis-url URL] [--seconds S] [--repeats N]

Without --redis-url a redis-server (from PATH) is started on a free loopback
port. Rasa's stores are measured when `rasa.core.lock_store` is importable
(scripts/bench.sh makes it so from the rasa==3.6.21 wheel). Each figure is
the median of --repeats runs; ratios compare medians of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from typing import Any, Callable, Dict, List, Optional

import ticketlock
import ticketlock.rasa as tlrasa


@asynccontextmanager
async def trivial(conversation_id: str):
    yield None


def rasa_stores(redis_port: int) -> Dict[str, Any]:
    try:
        from rasa.core.lock_store import InMemoryLockStore, RedisLockStore
    except Exception:
        return {}
    return {
        "memory": InMemoryLockStore(),
        "redis": RedisLockStore(host="127.0.0.1", port=redis_port, db=1),
    }


async def loop_rate(make: Callable[[str], Any], seconds: float, tasks: int = 1) -> float:
    """Cycles per second of `async with make(id)` in `tasks` tasks, each on
    its own conversation; with several tasks, each yields to the others
    after every cycle (as message handlers interleave)."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal count
        conversation_id = f"bench-{i}"
        n = 0
        while True:
            for _ in range(50):
                async with make(conversation_id):
                    pass
                if tasks > 1:
                    await asyncio.sleep(0)
            n += 50
            if time.perf_counter() >= deadline:
                break
        count += n

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return count / (time.perf_counter() - started)


async def handoff_ms(store: ticketlock.LockStore, samples: int) -> float:
    """Median time from a holder's release to the waiter's entry, in ms."""
    times: List[float] = []
    for i in range(samples):
        conversation_id = f"handoff-{i}"
        holder = store.lock(conversation_id)
        await holder.__aenter__()
        released_at = 0.0

        async def wait() -> float:
            async with store.lock(conversation_id):
                return time.perf_counter()

        waiter = asyncio.ensure_future(wait())
        while not store.is_someone_waiting(conversation_id) or len(store.get_record(conversation_id)[1]) < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.002)  # the waiter is parked on its wake-up
        released_at = time.perf_counter()
        await holder.__aexit__(None, None, None)
        entered_at = await waiter
        times.append((entered_at - released_at) * 1000)
    return statistics.median(times)


async def async_runtimes_rate(store: ticketlock.LockStore, seconds: float) -> Optional[float]:
    if not hasattr(store, "_lock_via_future_into_py"):
        return None
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(50):
            held = await store._lock_via_future_into_py("bench-ar")
            await held.release()
        count += 50
    return count / (time.perf_counter() - started)


def start_redis() -> "tuple[subprocess.Popen, int, str]":
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench: redis-server is not on PATH; install it or pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="ticketlock-bench-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, port, workdir


def median_of(repeats: int, run: Callable[[], Any]) -> float:
    return statistics.median(asyncio.run(run()) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", help="redis://127.0.0.1:PORT (default: start a redis-server)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args()

    proc = None
    if args.redis_url:
        url = args.redis_url
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    else:
        proc, port, workdir = start_redis()
        url = f"redis://127.0.0.1:{port}/1"
    try:
        run(args, url, port)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, url: str, port: int) -> None:
    s, r = args.seconds, args.repeats
    memory = ticketlock.LockStore.in_memory()
    redis = ticketlock.LockStore.from_url(url)
    ours_rasa_memory = tlrasa.InMemoryLockStore()
    ours_rasa_redis = tlrasa.RedisLockStore(url="127.0.0.1", port=port, db=1)
    theirs = rasa_stores(port)
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, {s} s x {r} runs, medians")

    rows = []

    def row(name: str, value: Optional[float], unit: str = "cycles/s") -> Optional[float]:
        if value is not None:
            rows.append((name, value, unit))
            print(f"  {name:<58} {value:>12,.0f} {unit}" if unit == "cycles/s" else f"  {name:<58} {value:>12.2f} {unit}")
        return value

    print("in memory, one task, `async with` in a loop:")
    base = row("trivial @asynccontextmanager (baseline)", median_of(r, lambda: loop_rate(trivial, s)))
    rasa_mem = row("Rasa InMemoryLockStore.lock (baseline)", median_of(r, lambda: loop_rate(theirs["memory"].lock, s))) if theirs else None
    core = row("ticketlock LockStore.in_memory().lock", median_of(r, lambda: loop_rate(memory.lock, s)))
    wrap = row("ticketlock.rasa.InMemoryLockStore.lock", median_of(r, lambda: loop_rate(ours_rasa_memory.lock, s)))
    print(f"  ratios: core/trivial {core / base:.2f}, rasa-API/trivial {wrap / base:.2f}"
          + (f", core/Rasa {core / rasa_mem:.2f}, rasa-API/Rasa {wrap / rasa_mem:.2f}" if rasa_mem else ""))

    print("in memory, 32 tasks under asyncio.gather (own conversation each):")
    base32 = row("trivial @asynccontextmanager (baseline)", median_of(r, lambda: loop_rate(trivial, s, 32)))
    rasa32 = row("Rasa InMemoryLockStore.lock (baseline)", median_of(r, lambda: loop_rate(theirs["memory"].lock, s, 32))) if theirs else None
    core32 = row("ticketlock LockStore.in_memory().lock", median_of(r, lambda: loop_rate(memory.lock, s, 32)))
    print(f"  ratios: core/trivial {core32 / base32:.2f}" + (f", core/Rasa {core32 / rasa32:.2f}" if rasa32 else ""))

    if hasattr(memory, "_lock_via_future_into_py"):
        print("bridge, in memory, one task (lock + release):")
        row("PyO3 coroutines (this package)", core)
        ar_rate = row("pyo3-async-runtimes future_into_py", median_of(r, lambda: async_runtimes_rate(memory, s)))
        print(f"  per cycle: PyO3 {1e6 / core:.1f} us, future_into_py {1e6 / ar_rate:.1f} us")

    print("redis (loopback), 50 tasks on distinct conversations:")
    rasa_redis = row("Rasa RedisLockStore.lock (baseline)", median_of(r, lambda: loop_rate(theirs["redis"].lock, s, 50))) if theirs else None
    core_redis = row("ticketlock LockStore.from_url(...).lock", median_of(r, lambda: loop_rate(redis.lock, s, 50)))
    wrap_redis = row("ticketlock.rasa.RedisLockStore.lock", median_of(r, lambda: loop_rate(ours_rasa_redis.lock, s, 50)))
    if rasa_redis:
        print(f"  ratios: core/Rasa {core_redis / rasa_redis:.1f}, rasa-API/Rasa {wrap_redis / rasa_redis:.1f}")
    print("redis hand-off (release -> the waiter's entry), median of 200:")
    row("ticketlock, from Python", asyncio.run(handoff_ms(redis, 200)), "ms")


if __name__ == "__main__":
    main()
