"""SSE framing: priming the first event, keep-alives, [DONE], errors after the first byte."""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

from flask import Response

from . import fastjson
from .errors import as_gateway_error
from .iterables import chained, close
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
    # A chain, not a generator: the first event again, then the rest (iterables.Chained); a
    # list's iterator, not a tuple, so the first event is not kept for the stream's life.
    return chained(events, iter([first]), events)


class StreamBody:
    """A streamed response's body as the WSGI server gets it: the frames generator itself,
    iterated directly, and a close() that closes it and then runs the response's own close
    (its call_on_close callbacks).

    werkzeug would otherwise wrap the body in ClosingIterator and iter_encoded, two more
    levels of Python iteration for every write and two more frames on the stack of every
    waiting stream; frames are bytes already.
    """

    __slots__ = ("_frames", "_response", "_closed")

    def __init__(self, frames: Iterator[bytes], response: Response) -> None:
        self._frames, self._response, self._closed = frames, response, False

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close(self._frames)
        finally:
            self._response.close()      # calls this close() again (a no-op), then its callbacks


def stream(frames: Iterator[bytes]) -> Response:
    """A text/event-stream response of these frames, passed to the WSGI server as they are."""
    resp = Response(mimetype="text/event-stream", direct_passthrough=True)
    resp.response = StreamBody(frames, resp)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def encode(item: Any) -> bytes:
    if item is KEEPALIVE:
        return b": keep-alive\n\n"
    # An app may emit a lone surrogate (valid in JSON, not in UTF-8): send it as its JSON escape.
    text = fastjson.dumps(item)
    return b"data: " + text.encode("utf-8", "backslashreplace") + b"\n\n"


def frames(items: Iterable[Any], request_id: str | None = None,
           ready: Callable[[], bool] | None = None,
           on_error: Callable[[Exception], None] | None = None) -> Iterator[bytes]:
    """Encode items as SSE; an error mid-stream becomes one error event (and goes to on_error,
    the exchange's record); always ends with [DONE].

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
        if on_error is not None:
            on_error(err)
        if err.status_code == 499:
            return
        batch.append(encode(err.to_dict()))
    finally:
        close(source)
    batch.append(b"data: [DONE]\n\n")
    yield b"".join(batch)


def response(items: Iterable[Any], request_id: str | None = None,
             ready: Callable[[], bool] | None = None,
             on_error: Callable[[Exception], None] | None = None) -> Response:
    return stream(frames(items, request_id, ready, on_error))


__all__ = ["prime", "response", "frames", "encode"]
