"""Fixtures for the reliability and security tests: a misbehaving Gradio stand-in,
gateways with short timeouts in front of it, and a live gunicorn that can be probed."""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.conftest import Gunicorn, _log_path, free_port
from tests.standins.faulty import FaultyGradio

ROOT = Path(__file__).resolve().parent.parent

# Short timeouts, so every fault ends within seconds (CONTRACT §3 names them).
FAULT_TIMEOUTS = {"UPSTREAM_CONNECT_TIMEOUT": "1", "UPSTREAM_IDLE_TIMEOUT": "1",
                  "UPSTREAM_TOTAL_TIMEOUT": "3", "SSE_KEEPALIVE": "0.3"}
# The stand-in's apps, one per model: name -> App options.
FAULTY_APPS: dict[str, dict[str, Any]] = {
    "steady": {},                                   # answers "word0 word1 word2"
    "faulty": {},                                   # tests arm faults on it
    "redeployed": {},                               # changes its API between two calls
    "crawl": {"words": 400, "interval": 0.5},       # streams for 200 s: for disconnects
    "burst": {"words": 8, "interval": 0.02, "heartbeat": 2.0},   # the load test's app
    "vision": {"multimodal": True},                 # takes files: image_url parts are fetched
    "wanderer": {},                                 # redirects elsewhere when told to
    "plain": {"generator": False},                  # does not stream: the gateway pseudo-streams it
    "layout": {"components": 400},                  # a /config of 400 KiB, as real apps have: the cache test's
}

# A gunicorn config for probing the worker: gunicorn.conf.py plus a hook that answers, on a
# unix socket, how many greenlets are alive and how much memory and how many sockets it holds.
PROBE_CONFIG = '''
import runpy
globals().update({k: v for k, v in runpy.run_path(%(conf)r).items() if not k.startswith("__")})


def post_worker_init(worker):
    import gc, json, os
    import greenlet
    from gevent.server import StreamServer
    from gevent import socket as gsocket

    def report(sock, _address):
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and bool(o))
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass   # the descriptor listdir itself used
        inodes = {f[8:-1] for f in fds if f.startswith("socket:[")}
        close_wait = 0
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            for row in open(table).read().splitlines()[1:]:
                cols = row.split()
                close_wait += cols[3] == "08" and cols[9] in inodes   # 08: CLOSE_WAIT
        sock.sendall(json.dumps({"pid": os.getpid(), "greenlets": alive,
                                 "rss_kib": int(status["VmRSS"].split()[0]),
                                 "sockets": len(inodes), "close_wait": close_wait,
                                 "fds": len(fds)}).encode())
        sock.close()

    path = os.environ["GATEWAY_PROBE_SOCKET"]
    listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    StreamServer(listener, report).start()
'''


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE of this process (gunicorn children inherit it) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest.fixture(scope="session")
def faulty() -> Iterator[FaultyGradio]:
    """The misbehaving Gradio stand-in, one app per entry of FAULTY_APPS."""
    raise_open_files_limit()
    server = FaultyGradio()
    for name, options in FAULTY_APPS.items():
        server.add(name, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_faulty(faulty: FaultyGradio) -> Iterator[FaultyGradio]:
    """The stand-in with no armed faults and no records, and listening, before and after a test."""
    def reset() -> None:
        faulty.accept_if_refusing()
        faulty.forget()
        for app in faulty.apps.values():
            app.faults.clear()
            app.version = 1
            app.redirect_to = None
    reset()
    try:
        yield faulty
    finally:
        reset()


@pytest.fixture(scope="session")
def faulty_models_file(faulty: FaultyGradio, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faulty") / "models.yaml"
    models = {name: {"space": app.url} for name, app in faulty.apps.items()}
    models["nowhere"] = {"space": f"http://127.0.0.1:{free_port()}/"}   # nothing listens there
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def faulty_env(models_file: Path, **extra: str) -> dict[str, str]:
    return {"MODELS_FILE": str(models_file), "BUILTIN_MODELS": "false", **FAULT_TIMEOUTS, **extra}


@pytest.fixture
def make_faulty_app(faulty_models_file: Path):
    """A gateway app (for Flask's test client) in front of the stand-in, with short timeouts."""
    from gateway import create_app

    def make(**extra: str):
        return create_app({"TESTING": True}, env=faulty_env(faulty_models_file, **extra))
    return make


@pytest.fixture
def faulty_client(make_faulty_app, fresh_faulty):
    return make_faulty_app().test_client()


class ProbedGunicorn(Gunicorn):
    """A live gunicorn (one gevent worker) in front of the stand-in, whose worker can be probed."""

    def __init__(self, models_file: Path, tmp: Path, **extra: str) -> None:
        config = tmp / "gunicorn_probe.conf.py"
        config.write_text(PROBE_CONFIG % {"conf": str(ROOT / "gunicorn.conf.py")})
        self.probe_path = str(tmp / "probe.sock")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **faulty_env(models_file), "WORKER_CONNECTIONS": "10000", "LOG_LEVEL": "WARNING",
               **extra, "GATEWAY_PROBE_SOCKET": self.probe_path, "LISTEN": "127.0.0.1",
               "PORT": str(self.port), "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1"}
        self.log_path = _log_path(self.port)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(config), "wsgi:app"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def probe(self) -> dict[str, Any]:
        """The worker's live greenlets, RSS, sockets and file descriptors."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)   # a worker busy with thousands of streams answers late
            sock.connect(self.probe_path)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return json.loads(b"".join(chunks))



@pytest.fixture(scope="module")
def probed_gunicorn(faulty: FaultyGradio, faulty_models_file: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedGunicorn]:
    """One live gateway per module in front of the stand-in, with short timeouts."""
    server = ProbedGunicorn(faulty_models_file, tmp_path_factory.mktemp("gunicorn"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()
