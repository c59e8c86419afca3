"""The callback that resolves a waiting step's future, on its loop.

In Python rather than in the native module: it runs inside the event loop,
and `future.set_result` schedules the task through the loop's Python code.
A daemon thread's loop running it while the interpreter finalizes can be
ended by `pthread_exit` there, which a native frame on the stack would turn
into an abort (see `src/awaitable.rs`).
"""


def release_waiter(future):  # type: ignore[no-untyped-def]
    if not future.done():
        future.set_result(None)
