"""Request plumbing shared by the blueprints: request ids, JSON bodies, CORS, the exchange record."""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, g, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import ClientDisconnected

from . import fastjson, metrics
from . import status as status_board
from .concurrency import call_later, cooperate, gevent_active
from .errors import GatewayError, InvalidRequest, RequestTimeout, RequestTooLarge, UpstreamError
from .logs import access_logged, log_access
from .registry import Model
from .schemas import first_error

log = logging.getLogger("gateway")
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
BODY_STEP = 256 * 1024     # bytes of a request body read between two turns of the other greenlets


def request_id() -> str:
    """The client's X-Request-Id when it is sane, else a new one; stable within a request."""
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-Id", "")
        rid = g.request_id = given if SANE_ID.match(given) else "req_" + secrets.token_hex(12)
    return rid


def check_body_size(limit: int) -> None:
    """413 from Content-Length alone, before the body is read; a cap for chunked bodies too."""
    length = request.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    request.max_content_length = limit


def load_body(schema: Schema) -> Any:
    """Parse and validate a JSON object body, or raise a 400 naming the field."""
    if request.mimetype != "application/json":
        raise InvalidRequest("The body must be JSON sent as Content-Type: application/json.",
                             param=None, code="invalid_content_type")
    raw = read_body()
    limit = request.max_content_length
    # A chunked body has no Content-Length: the read stops at the limit, so look for a byte past it.
    if limit is not None and len(raw) >= limit and request.content_length is None \
            and request.environ["wsgi.input"].read(1):
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    try:
        body = fastjson.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not valid UTF-8.", code="invalid_json") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    try:
        return schema.load(body)
    except ValidationError as exc:
        param, message = first_error(exc.messages)
        missing = message == "Missing data for required field."
        raise InvalidRequest(f"'{param}' is a required field." if missing else f"Invalid '{param}': {message}",
                             param=param, code="missing_field" if missing else "invalid_value") from None
    except RecursionError:
        raise InvalidRequest("The body is nested too deeply.", code="invalid_json") from None


class _BodyDeadline(Exception):
    """The whole body did not arrive within UPSTREAM_TOTAL_TIMEOUT (an Exception, so that
    gunicorn marks the body as failed and closes the connection after the answer)."""


def read_body() -> bytes | bytearray:
    """The request body, read within the timeouts: a client that sends headers and then stalls
    (or trickles) gets 408 after UPSTREAM_IDLE_TIMEOUT without a byte, or UPSTREAM_TOTAL_TIMEOUT
    in all; malformed chunked framing is a 400. Either way gunicorn closes the connection after
    the answer, since where the next request would start is unknown."""
    sock = request.environ.get("gunicorn.socket")
    try:
        if sock is None or not gevent_active():
            return request.get_data(cache=False)
        import gevent

        settings = gateway_state().settings
        previous = sock.gettimeout()
        sock.settimeout(settings.idle_timeout)
        try:
            with gevent.Timeout(settings.total_timeout, _BodyDeadline):
                if request.content_length:
                    return _read_in_steps(request.stream, request.content_length)
                return request.get_data(cache=False)
        finally:
            sock.settimeout(previous)
    except ClientDisconnected as exc:      # werkzeug's wrapping of an error reading the stream
        raise _body_error(exc.__context__) from None
    except (OSError, _BodyDeadline) as exc:
        raise _body_error(exc) from None
    except Exception as exc:
        if type(exc).__module__.startswith("gunicorn."):   # its ParseException: bad chunk framing
            raise _body_error(exc) from None
        raise


def _read_in_steps(stream: Any, length: int) -> bytes | bytearray:
    """A body of known length, BODY_STEP at a time, with a turn for the others in between. Read
    whole, each of 40 bodies of 9.3 MB arriving together drained the megabytes waiting on its
    socket in one go, and /healthz waited a second for the round (issue 12: 9). The buffer
    grows as the body arrives, not by what Content-Length announces.

    A body of one step (nearly every chat) is read at once: no step buffer and no extra turn.
    A 256 KiB buffer for every request cost CPU and, through malloc's sliding mmap threshold,
    about 12 KiB of memory per open stream (bench/)."""
    if length <= BODY_STEP:
        return stream.read(length)
    body, step = bytearray(), bytearray(BODY_STEP)
    with memoryview(step) as window:
        while len(body) < length:
            got = stream.readinto(window[:min(BODY_STEP, length - len(body))])
            if not got:
                break
            body += window[:got]
            cooperate()
    return body


def _body_error(cause: BaseException | None) -> GatewayError:
    if isinstance(cause, (TimeoutError, _BodyDeadline)):
        return RequestTimeout("The request body did not arrive within the client timeouts.")
    # gunicorn's ParseException (malformed chunk framing), or a client gone mid-body.
    return InvalidRequest("The request body's framing is malformed or incomplete.", code="invalid_body")


def add_request_id_header(response: Any) -> Any:
    response.headers["X-Request-Id"] = request_id()
    return response


def gateway_state(app: Flask | None = None) -> Any:
    from flask import current_app

    return (app or current_app).extensions["gradio_chat_gateway"]


# ---------------------------------------------------------------- CORS

# What a page of an allowed origin may read: the request id, when to retry, and a key's windows.
EXPOSED_HEADERS = ", ".join(["X-Request-Id", "Retry-After"] + [
    f"x-ratelimit-{part}-{what}" for what in ("requests", "tokens") for part in ("limit", "remaining", "reset")])


def add_cors_headers(response: Any, origins: tuple[str, ...]) -> Any:
    """CORS_ORIGINS: let the listed browser origins (or "*") call the API, preflights included."""
    origin = request.headers.get("Origin")
    if not origins or not origin or not ("*" in origins or origin in origins):
        return response
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
    headers.add("Vary", "Origin")
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        # Browser SDKs add headers of their own (openai's x-stainless-*): allow what is asked for.
        headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Authorization, Content-Type")
        headers["Access-Control-Max-Age"] = "600"
    return response


# ---------------------------------------------------------------- the exchange record


@dataclass
class Exchange:
    """One API request as the access log and the metrics see it; outlives the request context."""

    request_id: str
    method: str
    path: str
    cache: Any = None
    started: float = field(default_factory=time.monotonic)
    model: str | None = None
    requested_model: str | None = None     # what the client asked for, even when it does not exist
    key: str | None = None                  # the gateway key's name (KEYS_FILE), never the key
    upstream: str | None = None
    stream: bool = False
    run: Any = None
    upstream_started: float | None = None
    upstream_ended: float | None = None
    error: GatewayError | None = None
    cutoff: Any = None                      # cancels the slow-client cut-off when the answer is done

    def fail(self, exc: BaseException) -> None:
        if self.error is None and isinstance(exc, GatewayError):
            self.error = exc

    def time_to_first_token(self) -> float | None:
        first = getattr(self.run, "first_event_at", None)
        return first - self.started if isinstance(first, float) else None


def begin_exchange(cache: Any = None) -> None:
    g.gateway_exchange = Exchange(request_id(), request.method, request.path, cache)


def current_exchange() -> Exchange | None:
    return g.get("gateway_exchange")


def upstream_host(model: Model) -> str:
    """Where the model's app lives: the URL's host, or the Space id (its host comes from the Hub)."""
    return urlsplit(model.space).netloc if model.is_url else model.space


def note_requested_model(model_id: str) -> None:
    """The access line names the model asked for, an unknown one included (the metrics do not:
    a label per made-up id would grow without bound)."""
    ex = current_exchange()
    if ex is not None:
        ex.requested_model = model_id if len(model_id) <= 200 else model_id[:200] + "..."


def observe_run(model: Model, stream: bool, run: Any) -> None:
    """Note the model and the upstream run of this request, for the access line and the metrics."""
    ex = current_exchange()
    if ex is None:
        return
    ex.model, ex.stream, ex.upstream, ex.run = model.id, stream, upstream_host(model), run
    ex.upstream_started = time.monotonic()
    run.on_close(lambda: setattr(ex, "upstream_ended", time.monotonic()))
    ex.cutoff = cut_off_slow_client(run.deadline + gateway_state().settings.idle_timeout)


def cut_off_slow_client(deadline: float) -> Any:
    """A client that stops reading cannot hold its answer (and the upstream job) past the timeouts.

    gunicorn writes the answer with no timeout: a client that never reads would keep the write,
    the run and its memory for as long as it stays connected. At deadline (UPSTREAM_TOTAL_TIMEOUT,
    plus UPSTREAM_IDLE_TIMEOUT to write the timeout's own error) the socket is shut down; the
    blocked write fails, gunicorn closes the response, and the close reaches the upstream job.
    Returns what cancels it (None where there is no gunicorn socket)."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None or not gevent_active():
        return None

    def cut() -> None:            # runs in the event loop: must not block
        # The OS socket's shutdown, not gevent's: that one would cancel the blocked write with an
        # error gunicorn logs as a traceback; this one makes the write fail with EPIPE, quietly.
        with contextlib.suppress(OSError):
            getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
    return call_later(deadline - time.monotonic(), cut)


def finish_exchange(response: Any) -> Any:
    """after_request: record the exchange when the response is closed (for a stream: when it ends)."""
    ex = current_exchange()
    if ex is None:
        return response
    streaming = bool(response.is_streamed and response.mimetype == "text/event-stream")
    if streaming:
        metrics.OPEN_STREAMS.inc()
    response.call_on_close(partial(record_exchange, ex, response.status_code, streaming))
    return response


def record_exchange(ex: Exchange, status: int, streaming: bool) -> None:
    """Count the request and write its access line; a failure here never reaches the client."""
    if ex.cutoff is not None:
        ex.cutoff()
    try:
        _record(ex, status, streaming)
    except Exception:
        log.exception("could not record request %s", ex.request_id)


def _record(ex: Exchange, status: int, streaming: bool) -> None:
    now = time.monotonic()
    ttft = ex.time_to_first_token()
    if streaming:
        metrics.OPEN_STREAMS.dec()
    metrics.REQUESTS.labels(ex.model or "", str(status), str(ex.stream).lower()).inc()
    if ex.model and ttft is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(ex.model).observe(ttft)
    if ex.model and ex.upstream_started is not None:
        metrics.UPSTREAM_LATENCY.labels(ex.model).observe((ex.upstream_ended or now) - ex.upstream_started)
    if isinstance(ex.error, UpstreamError):
        metrics.UPSTREAM_ERRORS.labels(ex.error.code or "unknown").inc()
    if ex.run is not None:
        status_board.record(ex.model, ex.error)   # what the status page shows of the model
    metrics.sync_cache(ex.cache)
    if not access_logged():
        return
    log_access({"request_id": ex.request_id, "method": ex.method, "path": ex.path,
                "model": ex.model or ex.requested_model, "key": ex.key,
                "status": status, "stream": ex.stream, "duration_ms": _ms(now - ex.started),
                "ttft_ms": _ms(ttft), "upstream": ex.upstream,
                "error": ex.error.code if ex.error is not None else None})


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
