"""Fixtures for the upstream tests, and the suite's token-leak check.

The check: every log record of the whole test session (a root handler) and
every gunicorn output file (tests.conftest.GUNICORN_LOGS) is scanned at the
end; a test token appearing in any of them fails the run. Tests use the
distinctive fake tokens below (all contain "testtoken"), so a leak is
unmistakable.
"""
from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

USER_TOKEN = "hf_testtokenUserAlphaQ7Zk2LmN4pR8sT"
OTHER_TOKEN = "hf_testtokenUserBravoW3Xc9VbN1mK5jH"
OPERATOR_TOKEN = "hf_testtokenOperatorY6Ud2FsA8qE0wP"
PRIVATE_TOKEN = "hf_testtokenPrivateL4Gh7JkD1sZ3xC"
IP_TOKEN = "iptoken-testtoken-Delta5Rt8Yu1Io4"
TEST_TOKENS = (USER_TOKEN, OTHER_TOKEN, OPERATOR_TOKEN, PRIVATE_TOKEN, IP_TOKEN)
LEAK = re.compile(r"testtoken[A-Za-z0-9]*")


def find_leaks(lines: list[str]) -> list[str]:
    """The lines that contain a test token, with the token itself masked."""
    return [LEAK.sub("<TOKEN>", line)[:300] for line in lines if LEAK.search(line)]


class _LeakWatch(logging.Handler):
    """Formats every record that reaches the root logger; keeps the ones with a token."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.hits: list[str] = []
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record is some other test's business
            return
        self.seen += 1
        if LEAK.search(line):
            self.hits.append(line)


_WATCH = _LeakWatch()


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_WATCH)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.conftest import GUNICORN_LOGS

    logging.getLogger().removeHandler(_WATCH)
    lines = list(_WATCH.hits)
    for path in GUNICORN_LOGS:
        try:
            lines += Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
    leaks = find_leaks(lines)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.write_sep("=", "a test token appeared in the logs", red=True)
            for line in leaks[:20]:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None and reporter.verbosity > 0:
        reporter.write_line(f"token-leak check: {_WATCH.seen} log records and "
                            f"{len(GUNICORN_LOGS)} gunicorn logs, no token found")


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def upstream_apps() -> Iterator[dict[str, str]]:
    """The real Gradio apps of tests/standins/apps.py: name -> URL."""
    from tests.standins import apps as standin_apps

    builds: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
        "headers": (standin_apps.headers_app, {}),
        "crawl": (standin_apps.crawl_app, {}),
        "blocking": (standin_apps.blocking_app, {"default_concurrency_limit": 1, "max_size": 1}),
    }
    served, urls = [], {}
    try:
        for name, (build, queue) in builds.items():
            port = free_port()
            served.append(standin_apps.serve(build, port, **queue))
            urls[name] = f"http://127.0.0.1:{port}/"
        yield urls
    finally:
        standin_apps.RELEASE.set()
        for demo in served:
            demo.close()


@pytest.fixture
def fake_gradio() -> Iterator[Callable[..., Any]]:
    """Start scripted stand-in Gradio servers: fake_gradio(**script fields)."""
    from tests.standins.fake_gradio import FakeGradio, Script

    started: list[FakeGradio] = []

    def start(**script: Any) -> FakeGradio:
        server = FakeGradio(Script(**script))
        started.append(server)
        return server
    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def hub() -> Iterator[Any]:
    """A stand-in Hub that knows the test tokens."""
    from tests.standins.hub import StandInHub

    server = StandInHub(set(TEST_TOKENS))
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- gateways


def write_models(path: Path, models: dict[str, str | dict[str, Any]]) -> Path:
    entries = {mid: (spec if isinstance(spec, dict) else {"space": spec}) for mid, spec in models.items()}
    path.write_text(yaml.safe_dump({"models": entries}))
    return path


def gateway_env(models_path: Path, env: dict[str, str]) -> dict[str, str]:
    """Short timeouts by default, only the given models, nothing from the machine."""
    full = {"MODELS_FILE": str(models_path), "BUILTIN_MODELS": "false",
            "UPSTREAM_CONNECT_TIMEOUT": "2", "UPSTREAM_IDLE_TIMEOUT": "5",
            "UPSTREAM_TOTAL_TIMEOUT": "20", "SSE_KEEPALIVE": "0.3"}
    full.update(env)
    return full


@pytest.fixture
def gateway(tmp_path: Path) -> Callable[..., Any]:
    """gateway(models, **env): a Flask test client for a gateway serving just those models."""
    from gateway import create_app

    def make(models: dict[str, str | dict[str, Any]], **env: str) -> Any:
        path = write_models(tmp_path / f"models-{len(list(tmp_path.iterdir()))}.yaml", models)
        app = create_app({"TESTING": True}, env=gateway_env(path, env))
        client = app.test_client()
        client.application = app
        return client
    return make


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """live_gateway(models, **env): a started gunicorn (gevent workers) serving those models."""
    from tests.conftest import Gunicorn

    started: list[Gunicorn] = []

    def start(models: dict[str, str | dict[str, Any]], **env: str) -> Gunicorn:
        path = write_models(tmp_path / f"live-{len(started)}.yaml", models)
        server = Gunicorn(gateway_env(path, env), workers=1)
        started.append(server)
        return server.wait_ready()
    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def stream_gateway(upstream_apps: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One live gunicorn (gevent worker) for the streaming, timeout and cancellation tests.

    Models: crawl (a real slow app), silent (accepts, then says nothing), late (a first
    word after 1.2 s, like a queue or a ZeroGPU allocation), with SSE_KEEPALIVE=0.3 and
    UPSTREAM_IDLE_TIMEOUT=1.5.
    """
    from tests.conftest import Gunicorn
    from tests.standins.fake_gradio import FakeGradio, Script

    silent = FakeGradio(Script(events=[("hang", 30)]))
    late = FakeGradio(Script(events=[("pause", 1.2), ("generating", ["at last"]), ("complete", ["at last"])]))
    # A burst, a heartbeat, then a pause: what came before the pause must not wait for it.
    burst = FakeGradio(Script(events=[("generating", ["one"]), ("generating", ["one two"]), ("heartbeat", None),
                                      ("generating", ["one two"]), ("pause", 1.0),
                                      ("generating", ["one two three"]), ("complete", ["one two three"])]))
    path = write_models(tmp_path_factory.mktemp("live") / "models.yaml",
                        {"crawl": upstream_apps["crawl"], "silent": silent.url, "late": late.url,
                         "burst": burst.url})
    server = Gunicorn(gateway_env(path, {"UPSTREAM_IDLE_TIMEOUT": "1.5"}), workers=1)
    server.standins = {"silent": silent, "late": late, "burst": burst}
    try:
        yield server.wait_ready()
    finally:
        server.stop()
        silent.stop()
        late.stop()
        burst.stop()


def chat(text: str = "hello", model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
