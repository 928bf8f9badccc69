"""Fixtures for tests/test_generations.py: real Gradio servers of every generation behind one gateway.

Each Gradio version runs tests/generations/space_apps.py in its own venv (tests/generations/venvs.py,
built and cached outside the clone); the versions the collected tests need start in parallel, once
per session, and one live gunicorn gateway serves a models file naming every app of every started
version by its URL alone (`space: <url>`): the gateway has to find the endpoint and map it by itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.conftest import ROOT, Gunicorn, gateway_env, stop_process
from tests.generations import venvs

SPACE_APPS = ROOT / "tests" / "generations" / "space_apps.py"
START_TIMEOUT = float(os.environ.get("GEN_START_TIMEOUT", "600"))   # 7 Gradio imports on 2 shared cores: 1-4 min
NO_INTERNET = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "ALL_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "all_proxy": "http://127.0.0.1:9"}


def model_id(version: str, app: str) -> str:
    return f"gradio-{version}-{app}"


@dataclass
class Generation:
    """One Gradio version's space_apps.py process and what it serves."""

    version: str
    python: Path
    workdir: Path
    proc: subprocess.Popen | None = None
    urls: dict[str, str] = field(default_factory=dict)
    served_version: str = ""

    @property
    def port_file(self) -> Path:
        return self.workdir / "apps.json"

    @property
    def cancel_dir(self) -> Path:
        return self.workdir / "cancel"

    @property
    def log_path(self) -> Path:
        return self.workdir / "space_apps.log"

    def start(self) -> None:
        self.cancel_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **venvs.RUN_ENV, **NO_INTERNET, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([str(self.python), str(SPACE_APPS), "--port-file", str(self.port_file),
                                          "--cancel-dir", str(self.cancel_dir)],
                                         cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline: float) -> None:
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"gradio {self.version} apps exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gradio {self.version} apps not up after {START_TIMEOUT:.0f} s:\n{self.log()}")
            time.sleep(0.2)
        served = json.loads(self.port_file.read_text())
        self.urls, self.served_version = served["apps"], served["gradio"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


def wanted_versions(session: pytest.Session) -> list[str]:
    """The versions the collected generation tests use (all of them when none says)."""
    seen = {item.callspec.params["version"] for item in session.items
            if hasattr(item, "callspec") and "version" in item.callspec.params}
    return [v for v in venvs.ALL if v in seen] or list(venvs.ALL)


@pytest.fixture(scope="session")
def generations(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[dict[str, Generation]]:
    """version -> its running apps; the versions start together, each once for the session."""
    versions = wanted_versions(request.session)
    pythons = venvs.ensure_all(versions)            # cached: instant when warm
    root = tmp_path_factory.mktemp("generations")
    gens = {v: Generation(v, pythons[v], root / v) for v in versions}
    try:
        started = time.monotonic()
        for gen in gens.values():
            gen.workdir.mkdir(parents=True, exist_ok=True)
            gen.start()
        deadline = started + START_TIMEOUT
        for gen in gens.values():
            gen.wait_ready(deadline)
        print(f"\n[generations] {', '.join(versions)} serving after {time.monotonic() - started:.0f} s")
        yield gens
    finally:
        for gen in gens.values():
            gen.stop()


def generations_models(gens: dict[str, Generation]) -> dict[str, Any]:
    """Every app of every version, by its URL alone."""
    return {"models": {model_id(v, app): {"space": url} for v, gen in gens.items() for app, url in gen.urls.items()}}


@pytest.fixture(scope="session")
def generations_models_file(generations: dict[str, Generation], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("generations-models") / "models.yaml"
    path.write_text(yaml.safe_dump(generations_models(generations)))
    return path


def generations_env(models_file: Path, **extra: str) -> dict[str, str]:
    return gateway_env(models_file, **{"BUILTIN_MODELS": "false", **extra})


@pytest.fixture(scope="session")
def generations_gateway(generations_models_file: Path) -> Iterator[Gunicorn]:
    """One live gunicorn (two gevent workers) in front of every started version's apps."""
    # SSE_KEEPALIVE 10: an app error within 10 s is a JSON error with its real status even when streamed
    # (CONTRACT §4), however slow a loaded machine makes the app.
    server = Gunicorn(generations_env(generations_models_file, SSE_KEEPALIVE="10"), workers=2)
    try:
        yield server.wait_ready()
    finally:
        server.stop()
