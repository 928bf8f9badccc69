"""SSE framing: priming the first event, keep-alives, [DONE], errors after the first byte."""
from __future__ import annotations


from . import fastjson
import logging
from typing import Any, Callable, Iterable, Iterator

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
    text = fastjson.dumps(item)
    return b"data: " + text.encode("utf-8", "backslashreplace") + b"\n\n"


def frames(items: Iterable[Any], request_id: str | None = None,
           ready: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """Encode items as SSE; an error mid-stream becomes one error event; always ends with [DONE].

    While ready() says the next item is there already, frames are gathered and written
    together: a burst from the app (or the end of a stream) costs one write, not one each.
    Nothing is held back waiting for the app.
    """
    source = iter(items)
    batch: list[bytes] = []
    try:
        for item in source:
            batch.append(encode(item))
            if ready is None or not ready():
                yield b"".join(batch)
                batch.clear()
    except GeneratorExit:
        raise
    except Exception as exc:  # after the headers went out, the error travels in the stream
        err = as_gateway_error(exc, request_id)
        if err.status_code == 499:
            return
        batch.append(encode(err.to_dict()))
    finally:
        close(source)
    batch.append(b"data: [DONE]\n\n")
    yield b"".join(batch)


def response(items: Iterable[Any], request_id: str | None = None,
             ready: Callable[[], bool] | None = None) -> Response:
    resp = Response(frames(items, request_id, ready), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


__all__ = ["prime", "response", "frames", "encode"]
