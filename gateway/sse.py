"""SSE framing: priming the first event, keep-alives, [DONE], errors after the first byte."""
from __future__ import annotations


import json
import logging
from typing import Any, Iterable, Iterator

from flask import Response

from .errors import as_gateway_error
from .iterables import close
from .upstream.run import KEEPALIVE

log = logging.getLogger("gateway")


def prime(events: Iterator[Any]) -> Iterator[Any]:
    """Pull the first event now, so an error that comes first gets its real status code."""
    try:
        first = next(events)
    except StopIteration:
        return iter(())
    except BaseException:
        close(events)
        raise
    return _chain(first, events)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    try:
        yield first
        yield from rest
    finally:
        close(rest)


def encode(item: Any) -> bytes:
    if item is KEEPALIVE:
        return b": keep-alive\n\n"
    # An app may emit a lone surrogate (valid in JSON, not in UTF-8): send it as its JSON escape.
    text = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + text.encode("utf-8", "backslashreplace") + b"\n\n"


def frames(items: Iterable[Any], request_id: str | None = None) -> Iterator[bytes]:
    """Encode items as SSE; an error mid-stream becomes one error event; always ends with [DONE]."""
    source = iter(items)
    try:
        for item in source:
            yield encode(item)
    except GeneratorExit:
        raise
    except Exception as exc:  # after the headers went out, the error travels in the stream
        err = as_gateway_error(exc, request_id)
        if err.status_code == 499:
            return
        yield encode(err.to_dict())
    finally:
        close(source)
    yield b"data: [DONE]\n\n"


def response(items: Iterable[Any], request_id: str | None = None) -> Response:
    resp = Response(frames(items, request_id), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


__all__ = ["prime", "response", "frames", "encode"]
