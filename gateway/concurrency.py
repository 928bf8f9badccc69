"""Spawning background work and queues that suit the running server.

Under gunicorn's gevent worker the socket module is monkey-patched: work runs
in greenlets (no OS thread per request). Under the Flask dev server or a test
client nothing is patched, so plain threads and queues serve the same code.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable


def gevent_active() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a runtime dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def spawn(fn: Callable[..., Any], *args: Any) -> None:
    """Run fn(*args) in the background: a greenlet under gevent, else a daemon thread."""
    if gevent_active():
        import gevent

        gevent.spawn(fn, *args)
    else:
        threading.Thread(target=fn, args=args, daemon=True).start()


class GreenMailbox:
    """A queue for one reading greenlet: a deque and an Event (O(1) at both ends).

    gevent.queue.Queue does the same for many readers and writers, and costs about 2.5 KiB
    an instance against 0.2 KiB; with one per open stream that is 3 KiB a stream (measured
    by bench/). Greenlets switch only where they wait, so the check-then-wait in get() is
    not a race: a put() cannot run between the two.
    """

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        import gevent.event

        self._items: deque[Any] = deque()
        self._ready = gevent.event.Event()

    def put(self, item: Any) -> None:
        self._items.append(item)
        self._ready.set()

    def qsize(self) -> int:
        return len(self._items)

    def get_nowait(self) -> Any:
        if not self._items:
            raise queue.Empty
        return self._items.popleft()

    def get(self, timeout: float | None = None) -> Any:
        if not self._items:
            self._ready.clear()
            self._ready.wait(timeout)
        return self.get_nowait()


def call_later(seconds: float, fn: Callable[[], None]) -> Callable[[], None]:
    """Run fn after seconds (in the event loop under gevent: fn must not block); returns a cancel."""
    if gevent_active():
        from gevent import get_hub

        timer = get_hub().loop.timer(max(seconds, 0.0))
        timer.start(fn)
        return timer.close
    thread = threading.Timer(max(seconds, 0.0), fn)
    thread.daemon = True
    thread.start()
    return thread.cancel


def within(seconds: float, fn: Callable[[], Any], default: Any) -> Any:
    """fn() if it returns within `seconds`, else `default` (fn interrupted where it waits).
    Under threads fn runs to its end: its own socket timeouts bound it."""
    if gevent_active():
        import gevent

        return gevent.with_timeout(seconds, fn, timeout_value=default)
    return fn()


def make_queue() -> Any:
    """A queue with put, qsize, get_nowait and get(timeout=...) that raise queue.Empty;
    for one reader, cooperative under gevent."""
    if gevent_active():
        return GreenMailbox()
    return queue.Queue()


EMPTY: tuple[type[BaseException], ...]
try:
    import gevent.queue as _gq

    EMPTY = (queue.Empty, _gq.Empty)
except ImportError:  # pragma: no cover
    EMPTY = (queue.Empty,)


def cooperate() -> None:
    """Let other greenlets run: for a long computation in one, so the worker keeps answering."""
    if gevent_active():
        import gevent

        gevent.sleep(0)
