"""A real redis-server (Debian's package `redis-server`) on a free 127.0.0.1 port, for the tests
of REDIS_URL. Started and stopped by the tests' fixtures; `kill()` and `start()` again on the same
port play Redis going away mid-run and coming back (empty: no persistence)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from tests.conftest import free_port, stop_process


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (.ci/run installs it)")
    return path


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="gateway-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 15.0) -> "RedisServer":
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def kill(self) -> None:
        """SIGKILL: Redis vanishes as a crashed host would, open connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self):  # type: ignore[no-untyped-def]
        import redis
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def commands_processed(self) -> int:
        """Redis's own count of the commands it ran (a script call counts once)."""
        return int(self.client().info("stats")["total_commands_processed"])

    def round_trips(self, work) -> list[str]:  # type: ignore[no-untyped-def]
        """The commands clients sent while work() ran (MONITOR; commands run by scripts left out)."""
        import threading
        seen: list[str] = []
        ready = threading.Event()
        marker = "round-trips-done"

        def watch() -> None:
            with self.client().monitor() as monitor:
                ready.set()
                for entry in monitor.listen():
                    if marker in entry["command"]:
                        return
                    if entry.get("client_type") != "lua":
                        seen.append(entry["command"])
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        ready.wait(10)
        self.client().ping()           # MONITOR is on once the server answered its OK: sync on it
        try:
            work()
        finally:
            self.client().echo(marker)
            thread.join(10)
        return [c for c in seen if c != "PING"]
