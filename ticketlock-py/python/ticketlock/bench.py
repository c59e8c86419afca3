"""Benchmarks of the Python package, with their baselines in the same run.

    python -m ticketlock.bench [--redis-url URL] [--seconds S] [--repeats N]

Without --redis-url a redis-server (from PATH) is started on a free loopback
port. Rasa's stores are measured when `rasa.core.lock_store` is importable
(scripts/bench.sh makes it so from the rasa==3.6.21 wheel). Each figure is
the median of --repeats runs; ratios compare medians of the same run.
The contenders of a workload take turns, one run each per round, so that a
change of the machine's load falls on all of them alike. In-memory rows
also give cycles per CPU second of the process (`time.process_time`),
which the other programs on a busy machine disturb less than the wall
clock; Redis rows give them too (the process's CPU only, not the
server's).
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


async def loop_rate(make: Callable[[str], Any], seconds: float, tasks: int = 1) -> "tuple[float, float]":
    """Cycles per second of `async with make(id)` in `tasks` tasks, each on
    its own conversation, by the wall clock and per CPU second of the
    process; with several tasks, each yields to the others after every
    cycle (as message handlers interleave)."""
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

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return count / wall, count / max(cpu, 1e-9)


def take_turns(
    repeats: int, seconds: float, tasks: int, contenders: "Dict[str, Callable[[str], Any]]"
) -> "Dict[str, tuple[float, float]]":
    """Median (wall, CPU) rates of each contender, the runs interleaved."""
    runs: Dict[str, List["tuple[float, float]"]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, make in contenders.items():
            runs[name].append(asyncio.run(loop_rate(make, seconds, tasks)))
    return {
        name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for name, r in runs.items()
    }


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
    # The core API's default layout is Rasa's (a fleet can mix Rasa's
    # processes in); a fleet of ticketlock alone can choose the native one.
    redis_native = ticketlock.LockStore.from_url(url + "?layout=native")
    ours_rasa_memory = tlrasa.InMemoryLockStore()
    ours_rasa_redis = tlrasa.RedisLockStore(url="127.0.0.1", port=port, db=1)
    theirs = rasa_stores(port)
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, {s} s x {r} runs, medians")
    print(f"  {'':<52} {'wall clock':>21}   {'process CPU time':>22}")

    def row(name: str, rates: "tuple[float, float]", cpu: bool = True) -> None:
        wall, per_cpu = rates
        extra = f"   {per_cpu:>12,.0f} per CPU-s" if cpu else ""
        print(f"  {name:<52} {wall:>12,.0f} cycles/s{extra}")

    def ratios(pairs: "List[tuple[str, tuple[float, float], tuple[float, float]]]", cpu: bool = True) -> None:
        parts = []
        for label, a, b in pairs:
            parts.append(f"{label} {a[0] / b[0]:.2f}" + (f" (CPU {a[1] / b[1]:.2f})" if cpu else ""))
        print("  ratios: " + ", ".join(parts))

    print("in memory, one task, `async with` in a loop:")
    one = {"trivial": trivial, "core": memory.lock, "wrap": ours_rasa_memory.lock}
    if theirs:
        one["rasa"] = theirs["memory"].lock
    m1 = take_turns(r, s, 1, one)
    row("trivial @asynccontextmanager (baseline)", m1["trivial"])
    if theirs:
        row("Rasa InMemoryLockStore.lock (baseline)", m1["rasa"])
    row("ticketlock LockStore.in_memory().lock", m1["core"])
    row("ticketlock.rasa.InMemoryLockStore.lock", m1["wrap"])
    pairs = [("core/trivial", m1["core"], m1["trivial"]), ("rasa-API/trivial", m1["wrap"], m1["trivial"])]
    if theirs:
        pairs += [("core/Rasa", m1["core"], m1["rasa"]), ("rasa-API/Rasa", m1["wrap"], m1["rasa"])]
    ratios(pairs)

    print("in memory, 32 tasks under asyncio.gather (own conversation each):")
    many = {"trivial": trivial, "core": memory.lock, "wrap": ours_rasa_memory.lock}
    if theirs:
        many["rasa"] = theirs["memory"].lock
    m32 = take_turns(r, s, 32, many)
    row("trivial @asynccontextmanager (baseline)", m32["trivial"])
    if theirs:
        row("Rasa InMemoryLockStore.lock (baseline)", m32["rasa"])
    row("ticketlock LockStore.in_memory().lock", m32["core"])
    row("ticketlock.rasa.InMemoryLockStore.lock", m32["wrap"])
    pairs = [("core/trivial", m32["core"], m32["trivial"]), ("rasa-API/trivial", m32["wrap"], m32["trivial"])]
    if theirs:
        pairs += [("core/Rasa", m32["core"], m32["rasa"]), ("rasa-API/Rasa", m32["wrap"], m32["rasa"])]
    ratios(pairs)

    if hasattr(memory, "_lock_via_future_into_py"):
        print("bridge, in memory, one task (lock + release):")
        ar_rate = median_of(r, lambda: async_runtimes_rate(memory, s))
        print(f"  {'PyO3 (this package)':<52} {m1['core'][0]:>12,.0f} cycles/s")
        print(f"  {'pyo3-async-runtimes future_into_py':<52} {ar_rate:>12,.0f} cycles/s")
        print(f"  per cycle: PyO3 {1e6 / m1['core'][0]:.1f} us, future_into_py {1e6 / ar_rate:.1f} us")

    print("redis (loopback), 50 tasks on distinct conversations:")
    remote = {"core": redis.lock, "native": redis_native.lock, "wrap": ours_rasa_redis.lock}
    if theirs:
        remote["rasa"] = theirs["redis"].lock
    rr = take_turns(r, s, 50, remote)
    if theirs:
        row("Rasa RedisLockStore.lock (baseline)", rr["rasa"])
    row("ticketlock LockStore.from_url(...).lock", rr["core"])
    row("same, ?layout=native", rr["native"])
    row("ticketlock.rasa.RedisLockStore.lock", rr["wrap"])
    if theirs:
        ratios(
            [
                ("core/Rasa", rr["core"], rr["rasa"]),
                ("native/Rasa", rr["native"], rr["rasa"]),
                ("rasa-API/Rasa", rr["wrap"], rr["rasa"]),
            ]
        )
    print("redis hand-off (release -> the waiter's entry), median of 200:")
    print(f"  {'ticketlock, from Python':<52} {asyncio.run(handoff_ms(redis, 200)):>12.2f} ms")


if __name__ == "__main__":
    main()
