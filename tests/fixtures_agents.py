"""Fixtures for the Responses API, tools, JSON output and n: the agent app behind its own gateway."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests import agent_apps
from tests.conftest import Gunicorn, gateway_env, serve_apps


@pytest.fixture(scope="session")
def agent_app_url() -> Iterator[str]:
    for urls in serve_apps(agent_apps.APPS):
        yield urls["agent"]


@pytest.fixture(scope="session")
def agent_models_file(agent_app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same app twice: with tool emulation, and with the default (tools ignored)."""
    path = tmp_path_factory.mktemp("agent-models") / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "agent": {"space": agent_app_url, "tools": "emulate"},
        "agent-ignore": {"space": agent_app_url},
        "agent-missing": {"space": "http://127.0.0.1:9/"},
    }}))
    return path


@pytest.fixture
def agent_client(agent_models_file: Path) -> Any:
    from gateway import create_app

    env = gateway_env(agent_models_file, BUILTIN_MODELS="false", UPSTREAM_CONNECT_TIMEOUT="2")
    return create_app({"TESTING": True}, env=env).test_client()


@pytest.fixture(scope="session")
def agent_gateway(agent_models_file: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(gateway_env(agent_models_file, BUILTIN_MODELS="false", SSE_KEEPALIVE="1"), workers=1)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def agent_base_url(agent_gateway: Gunicorn, monkeypatch: pytest.MonkeyPatch) -> str:
    """The live gateway's /v1; anything that tries to leave 127.0.0.1 (tracing) fails loudly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return agent_gateway.url + "/v1"
