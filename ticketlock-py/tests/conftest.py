"""Fixtures: Rasa's code from its wheel, and redis-server on a free port.

Under CI=true a missing redis-server or Rasa wheel fails the tests; outside
CI they are skipped with a message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Optional

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rasa_code  # noqa: E402

IN_CI = os.environ.get("CI") == "true"
# Before ticketlock is imported: its errors derive from Rasa's LockError
# and its stores from Rasa's LockStore when Rasa is importable.
RASA_DIR = rasa_code.install()


def missing(what: str) -> None:
    message = f"{what} is missing; it is required under CI=true"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{what} is missing (under CI=true this fails)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of its own, on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server")
        self.dir = tempfile.mkdtemp(prefix="ticketlock-redis-")
        self.log = os.path.join(self.dir, "redis.log")
        self.binary = binary
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--logfile", self.log,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.read_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start: {self.read_log()}")

    def read_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def url(self, db: int = 1) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 1):
        import redis

        return redis.StrictRedis(host="127.0.0.1", port=self.port, db=db)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(19)  # SIGSTOP

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)  # SIGCONT


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.resume()
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def redis_server(shared_redis: RedisServer) -> Iterator[RedisServer]:
    """The session's server, emptied for each test, its scripts and
    functions too: every test starts where a new deployment does, on a
    server that has never seen our scripts (the first calls load them;
    test_message_order checks that they keep their order meanwhile)."""
    client = shared_redis.client(0)
    client.flushall()
    client.script_flush()
    client.function_flush()
    yield shared_redis


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test's own, which it may pause or kill."""
    server = RedisServer()
    yield server
    server.resume()
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rasa() -> str:
    if RASA_DIR is None:
        missing(f"the rasa=={rasa_code.RASA_VERSION} wheel (scripts/test.sh downloads it)")
    return RASA_DIR  # type: ignore[return-value]


def closed_port() -> int:
    """A loopback port with nothing listening."""
    return free_port()
