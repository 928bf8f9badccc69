"""Gateway().init_app(app, url_prefix=...): the API inside a host Flask app, which keeps its own ways."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask

from gateway import Gateway
from gateway.config import load_settings
from tests.conftest import gateway_env


class HostFailure(Exception):
    pass


def host_app() -> Flask:
    """An existing app with its own routes, its own 404 page and its own error handler."""
    app = Flask("host")

    @app.get("/")
    def index() -> str:
        return "host index"

    @app.get("/boom")
    def boom() -> str:
        raise HostFailure("host failure")

    @app.errorhandler(404)
    def not_found(exc: Exception) -> tuple[str, int]:
        return "host 404 page", 404

    @app.errorhandler(HostFailure)
    def host_failure(exc: Exception) -> tuple[str, int]:
        return "host error page", 500

    return app


@pytest.fixture
def mounted(models_file: Path) -> Flask:
    app = host_app()
    Gateway().init_app(app, url_prefix="/llm", settings=load_settings(gateway_env(models_file)))
    return app


def test_api_answers_under_the_prefix(mounted):
    client = mounted.test_client()
    ids = {m["id"] for m in client.get("/llm/v1/models").get_json()["data"]}
    assert "echo-app" in ids
    resp = client.post("/llm/v1/chat/completions",
                       json={"model": "echo-app", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200
    assert resp.get_json()["choices"][0]["message"]["content"].startswith("echo: hi")
    assert resp.headers["X-Request-Id"]
    assert client.get("/llm/healthz").status_code == 200
    assert client.get("/llm/metrics").status_code == 200
    assert set(client.get("/llm/openapi.json").get_json()["paths"]) >= {"/llm/v1/chat/completions",
                                                                         "/llm/healthz"}


def test_gateway_errors_keep_openai_shape_under_the_prefix(mounted):
    resp = mounted.test_client().get("/llm/v1/models/no-such-model")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "model_not_found"


def test_host_routes_and_error_handlers_are_untouched(mounted):
    client = mounted.test_client()
    assert client.get("/").get_data(as_text=True) == "host index"
    missing = client.get("/no-such-page")
    assert (missing.status_code, missing.get_data(as_text=True)) == (404, "host 404 page")
    failed = client.get("/boom")
    assert (failed.status_code, failed.get_data(as_text=True)) == (500, "host error page")
    assert "X-Request-Id" not in client.get("/").headers
    assert client.get("/v1/models").status_code == 404        # nothing mounted outside the prefix


def test_host_logging_is_untouched(models_file: Path):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    app = host_app()
    logger_handlers = list(app.logger.handlers)
    Gateway().init_app(app, url_prefix="/llm", settings=load_settings(gateway_env(models_file, LOG_FORMAT="json")))
    app.test_client().get("/llm/v1/models")
    assert (root.handlers, root.level, app.logger.handlers) == (handlers, level, logger_handlers)


def test_second_init_app_on_the_same_app_is_refused(mounted, models_file: Path):
    with pytest.raises(RuntimeError, match="already registered"):
        Gateway().init_app(mounted, url_prefix="/other", settings=load_settings(gateway_env(models_file)))


def test_one_extension_object_serves_two_apps_with_their_own_state(models_file: Path):
    gateway = Gateway(settings=load_settings(gateway_env(models_file)))
    first, second = host_app(), host_app()
    gateway.init_app(first, url_prefix="/a")
    gateway.init_app(second, url_prefix="/b")
    assert first.extensions["gradio_chat_gateway"] is not second.extensions["gradio_chat_gateway"]
    assert first.test_client().get("/a/v1/models").status_code == 200
    assert second.test_client().get("/b/v1/models").status_code == 200
    assert second.test_client().get("/a/v1/models").status_code == 404
