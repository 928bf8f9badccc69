"""Fixtures: real Gradio apps, a gateway app for Flask's test client, a live gunicorn."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import gradio_apps  # noqa: E402

# Each area keeps its own fixtures in its own module.
pytest_plugins = ["tests.fixtures_mapping", "tests.fixtures_upstream", "tests.fixtures_ops",
                  "tests.fixtures_faults", "tests.fixtures_generations", "tests.fixtures_agents"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def serve_apps(builds: dict[str, Callable[[], Any]]) -> Iterator[dict[str, str]]:
    """Serve every Gradio app of builds for as long as the generator runs: name -> URL."""
    served, urls = [], {}
    try:
        for name, build in builds.items():
            demo, url = gradio_apps.serve(build, free_port())
            served.append(demo)
            urls[name] = url
        yield urls
    finally:
        for demo in served:
            demo.close()


@pytest.fixture(scope="session")
def apps() -> Iterator[dict[str, str]]:
    """Every app of tests/gradio_apps.py, served once for the whole session: name -> URL."""
    yield from serve_apps(gradio_apps.APPS)


@pytest.fixture(scope="session")
def models_file(apps: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models file naming each test app by its URL only (the gateway maps it by itself)."""
    path = tmp_path_factory.mktemp("models") / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {f"{name}-app": {"space": url}
                                               for name, url in apps.items()}}))
    return path


def gateway_env(models_file: Path, **extra: str) -> dict[str, str]:
    env = {"MODELS_FILE": str(models_file), "UPSTREAM_IDLE_TIMEOUT": "20",
           "UPSTREAM_TOTAL_TIMEOUT": "60", "SSE_KEEPALIVE": "5"}
    env.update(extra)
    return env


@pytest.fixture
def make_app(models_file: Path):
    from gateway import create_app

    def make(**extra: str):
        return create_app({"TESTING": True}, env=gateway_env(models_file, **extra))
    return make


@pytest.fixture
def client(make_app):
    return make_app().test_client()


# Output files of every gunicorn this session started (the token-leak check reads them).
GUNICORN_LOGS: list[str] = []


class Gunicorn:
    """A live `gunicorn -c gunicorn.conf.py wsgi:app` with gevent workers."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "LISTEN": "127.0.0.1", "PORT": str(self.port),
                    "WEB_CONCURRENCY": str(workers), "PYTHONUNBUFFERED": "1"}
        self.log_path = _log_path(self.port)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float = 30.0) -> "Gunicorn":
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become ready:\n{self.output()}")

    def output(self) -> str:
        """Everything gunicorn and the gateway printed so far."""
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def stop_process(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; nothing for one already gone (or None)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_path(port: int) -> str:
    """Where a gunicorn on port writes; remembered for the token-leak check."""
    path = str(Path(os.environ.get("PYTEST_GUNICORN_LOGS", "/tmp")) / f"gateway-gunicorn-{port}.log")
    GUNICORN_LOGS.append(path)
    return path


@pytest.fixture(scope="session")
def gunicorn(models_file: Path) -> Iterator[Gunicorn]:
    """One live gateway for the session (tests that need other settings start their own)."""
    server = Gunicorn(gateway_env(models_file, SSE_KEEPALIVE="1"), workers=2)
    try:
        yield server.wait_ready()
    finally:
        server.stop()
