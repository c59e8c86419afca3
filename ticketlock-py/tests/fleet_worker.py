"""One server of a mixed fleet: takes conversation locks with Rasa's own
RedisLockStore or with ours, and writes one line per critical section:
`kind pid conversation entered_ns left_ns lost` (CLOCK_MONOTONIC, shared by the
processes of one machine). Errors are counted, not raised.

usage: fleet_worker.py rasa|ours PORT SECTIONS CONVERSATIONS OUT
"""

import asyncio
import os
import sys
import time


async def main(kind: str, port: int, sections: int, conversations: int, out: str) -> None:
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import EndpointConfig

    store_type = "redis" if kind == "rasa" else "ticketlock.rasa.RedisLockStore"
    store = LockStore.create(EndpointConfig(url="127.0.0.1", port=port, db=1, type=store_type))
    lines = []
    errors = 0

    async def one(conversation_id: str) -> None:
        async with store.lock(conversation_id, lock_lifetime=3, wait_time_in_seconds=0.01) as held:
            entered = time.monotonic_ns()
            await asyncio.sleep(0.002)
            left = time.monotonic_ns()
        # Ours tells a holder whose ticket was gone at release (Rasa's store
        # yields no guard).
        lost = int(kind == "ours" and held.is_lost())
        lines.append(f"{kind} {os.getpid()} {conversation_id} {entered} {left} {lost}\n")

    async def section(n: int) -> None:
        nonlocal errors
        conversation_id = f"fleet-{n % conversations}"
        try:
            # Bounded: Rasa's waiters can poll forever once their own ticket
            # expired, and Rasa's stale writes can bring back a released
            # ticket for its lifetime (3 s here); both count as errors.
            await asyncio.wait_for(one(conversation_id), 5)
        except (Exception, asyncio.TimeoutError):
            errors += 1

    # A few messages in flight at a time, as a server handles them.
    for start in range(0, sections, 4):
        await asyncio.gather(*(section(n) for n in range(start, min(start + 4, sections))))
    with open(out, "w") as f:
        f.writelines(lines)
        f.write(f"errors {errors}\n")


if __name__ == "__main__":
    kind, port, sections, conversations, out = sys.argv[1:6]
    asyncio.run(main(kind, int(port), int(sections), int(conversations), out))
