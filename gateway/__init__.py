"""gradio-chat-gateway: an OpenAI-compatible chat API in front of Gradio apps."""
from __future__ import annotations

import os

# Before anything imports prometheus_client: empty means unset, like every setting (docker-compose.yml
# passes it empty), but prometheus_client takes a set-but-empty PROMETHEUS_MULTIPROC_DIR for
# multiprocess mode and writes its files into the working directory (read-only in the Docker image).
if "PROMETHEUS_MULTIPROC_DIR" in os.environ and not os.environ["PROMETHEUS_MULTIPROC_DIR"].strip():
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Mapping

from flask import Blueprint, Flask, request
from werkzeug.exceptions import HTTPException

from . import admission, cli, fastjson, openapi
from .config import ConfigError, Settings, load_settings
from .errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound, RequestTooLarge, error_response
from .http import (add_cors_headers, add_request_id_header, begin_exchange, check_body_size, current_exchange,
                   finish_exchange, request_id)
from .keys import KeyRing, load_keys
from .logs import configure_logging, hide_query_strings
from .registry import Registry, load_registry
from .routes import completions, health, meta, models, page, responses
from .shared_state import SharedState
from .upstream import Upstream

__all__ = ["create_app", "Gateway", "ConfigError", "Settings"]
__version__ = "0.1.0"
EXTENSION = "gradio_chat_gateway"


@dataclass
class GatewayState:
    """Per-app state, kept in app.extensions (never on the extension object)."""

    settings: Settings
    registry: Registry
    upstream: Upstream
    url_prefix: str = ""
    openapi: dict[str, Any] = field(default_factory=dict)
    keys: KeyRing = field(default_factory=lambda: KeyRing([]))      # KEYS_FILE (CONTRACT §10)
    shared: SharedState = field(default_factory=SharedState)       # REDIS_URL, or this process


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
    exchange = current_exchange()
    if exchange is not None:
        exchange.fail(exc)
    return add_request_id_header(error_response(exc, request_id()))


class Gateway:
    """The Flask extension: mounts the API into an app with init_app(app, url_prefix=...)."""

    def __init__(self, app: Flask | None = None, *, settings: Settings | None = None,
                 url_prefix: str = "") -> None:
        self.settings = settings
        if app is not None:
            self.init_app(app, url_prefix=url_prefix)

    def init_app(self, app: Flask, url_prefix: str = "", settings: Settings | None = None) -> None:
        """Mount the API (and its probes, /metrics, /openapi.json) under url_prefix.

        Only the gateway's own blueprints get its hooks and error handlers: the
        host app's routes, error handlers and logging stay as they were.
        """
        if EXTENSION in app.extensions:
            raise RuntimeError("The gateway is already registered on this app.")
        settings = settings or self.settings or load_settings()
        prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
        shared = SharedState(settings.redis_url)
        state = GatewayState(settings, load_registry(settings), Upstream(settings, shared), prefix,
                             openapi.build(prefix), load_keys(settings), shared)
        app.extensions[EXTENSION] = state
        hide_query_strings()              # an embedding host's DEBUG logs get no signed URLs either
        app.register_blueprint(_api_blueprint(state))
        app.register_blueprint(_meta_blueprint(state))


def _api_blueprint(state: GatewayState) -> Blueprint:
    api = Blueprint("gateway_api", __name__, url_prefix=state.url_prefix + "/v1")
    api.register_blueprint(models.bp)
    api.register_blueprint(completions.bp)
    api.register_blueprint(responses.bp)

    @api.before_request
    def guard() -> None:
        begin_exchange(state.upstream.apps)
        if request.method != "OPTIONS":   # a CORS preflight carries no credentials
            admission.authenticate(request.headers, state.settings, state.keys)
        check_body_size(state.settings.max_body_bytes)

    api.after_request(partial(add_cors_headers, origins=state.settings.cors_origins))
    api.after_request(finish_exchange)
    api.after_request(partial(admission.add_ratelimit_headers, state=state))
    api.after_request(add_request_id_header)
    api.register_error_handler(Exception, render_error)
    return api


def _meta_blueprint(state: GatewayState) -> Blueprint:
    """Probes, /metrics and /openapi.json: not logged line by line, no API key."""
    probes = Blueprint("gateway_health", __name__, url_prefix=state.url_prefix or None)
    probes.register_blueprint(health.bp)
    probes.register_blueprint(meta.bp)
    probes.register_blueprint(page.bp)
    probes.after_request(partial(add_cors_headers, origins=state.settings.cors_origins))
    probes.after_request(add_request_id_header)
    return probes


def _refuse_empty_segments() -> None:
    """`//v1/models`: werkzeug would match it as `/v1/models` (or redirect, with a Location built
    from Host); a path with an empty segment is no path of the API: 404 in the contract's shape."""
    if "//" in request.environ.get("PATH_INFO", ""):
        raise NotFound()


def _begin_unrouted() -> None:
    if request.blueprint is None:        # no route matched: the blueprints' hooks will not run
        begin_exchange()


def _finish_unrouted(response: Any) -> Any:
    return finish_exchange(response) if request.blueprint is None else response


def create_app(test_config: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None) -> Flask:
    """The standalone gateway: settings from the environment (or env), the API at /v1."""
    # No static files: Flask's default /static route would answer (OPTIONS, 404) outside our handlers.
    app = Flask(__name__, static_folder=None)
    app.json = fastjson.Provider(app)      # the standalone app's answers; a host app keeps its own
    # `//v1/models` would get werkzeug's 308 to a URL built from Host, with an HTML body and no
    # X-Request-Id: unmerged, it is an ordinary 404 in the contract's shape.
    app.url_map.merge_slashes = False
    app.before_request(_refuse_empty_segments)
    if test_config:
        app.config.update(test_config)
    settings = load_settings(env)
    configure_logging(settings)
    Gateway(app, settings=settings)
    # The whole app is ours: render every error, routing ones included, in OpenAI's shape,
    # and give a request that matched no route its access line too.
    app.register_error_handler(HTTPException, render_error)
    app.register_error_handler(Exception, render_error)
    app.before_request(_begin_unrouted)
    app.after_request(_finish_unrouted)
    app.cli.add_command(cli.models_cli)     # flask --app wsgi models probe|check
    return app
