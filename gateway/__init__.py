"""gradio-chat-gateway: an OpenAI-compatible chat API in front of Gradio apps."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Blueprint, Flask, request
from werkzeug.exceptions import HTTPException

from . import credentials
from .config import ConfigError, Settings, load_settings
from .errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, RequestTooLarge, error_response
from .http import add_request_id_header, check_body_size, request_id
from .registry import Registry, load_registry
from .routes import completions, health, models
from .upstream import Upstream

__all__ = ["create_app", "Gateway", "ConfigError", "Settings"]
EXTENSION = "gradio_chat_gateway"


@dataclass
class GatewayState:
    """Per-app state, kept in app.extensions (never on the extension object)."""

    settings: Settings
    registry: Registry
    upstream: Upstream


def from_http_exception(exc: HTTPException) -> GatewayError:
    """Werkzeug's routing and body errors, in the gateway's own shapes."""
    if exc.code == 413:
        return RequestTooLarge()
    if exc.code == 404:
        return NotFound()
    if exc.code == 405:
        return MethodNotAllowed()
    err = InvalidRequest(exc.description or "The request is invalid.")
    err.status_code = exc.code or 400
    return err


def render_error(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):
        exc = from_http_exception(exc)
    return add_request_id_header(error_response(exc, request_id()))


class Gateway:
    """The Flask extension: mounts the API into an app with init_app(app, url_prefix=...)."""

    def __init__(self, app: Flask | None = None, *, settings: Settings | None = None,
                 url_prefix: str = "") -> None:
        self.settings = settings
        if app is not None:
            self.init_app(app, url_prefix=url_prefix)

    def init_app(self, app: Flask, url_prefix: str = "", settings: Settings | None = None) -> None:
        if EXTENSION in app.extensions:
            raise RuntimeError("The gateway is already registered on this app.")
        settings = settings or self.settings or load_settings()
        state = GatewayState(settings, load_registry(settings), Upstream(settings))
        app.extensions[EXTENSION] = state
        prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""

        api = Blueprint("gateway_api", __name__, url_prefix=prefix + "/v1")
        api.register_blueprint(models.bp)
        api.register_blueprint(completions.bp)

        @api.before_request
        def guard() -> None:
            request_id()
            credentials.check_api_key(request.headers, state.settings)
            check_body_size(state.settings.max_body_bytes)

        api.after_request(add_request_id_header)
        api.register_error_handler(Exception, render_error)
        app.register_blueprint(api)

        probes = Blueprint("gateway_health", __name__, url_prefix=prefix or None)
        probes.register_blueprint(health.bp)
        probes.after_request(add_request_id_header)
        app.register_blueprint(probes)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gateway").setLevel(settings.log_level)


def create_app(test_config: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None) -> Flask:
    """The standalone gateway: settings from the environment (or env), the API at /v1."""
    app = Flask(__name__)
    if test_config:
        app.config.update(test_config)
    settings = load_settings(env)
    configure_logging(settings)
    Gateway(app, settings=settings)
    # The whole app is ours: render every error, routing ones included, in OpenAI's shape.
    app.register_error_handler(HTTPException, render_error)
    app.register_error_handler(Exception, render_error)
    return app
