"""Spawning background work and queues that suit the running server.

Under gunicorn's gevent worker the socket module is monkey-patched: work runs
in greenlets (no OS thread per request). Under the Flask dev server or a test
client nothing is patched, so plain threads and queues serve the same code.
"""
from __future__ import annotations

import queue
import threading
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


def make_queue() -> Any:
    """A queue whose get(timeout=...) raises queue.Empty, cooperative under gevent."""
    if gevent_active():
        import gevent.queue

        return gevent.queue.Queue()
    return queue.Queue()


EMPTY: tuple[type[BaseException], ...]
try:
    import gevent.queue as _gq

    EMPTY = (queue.Empty, _gq.Empty)
except ImportError:  # pragma: no cover
    EMPTY = (queue.Empty,)
