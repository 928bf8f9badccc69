"""A queue between the greenlet that talks to the app and the response that reads it."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .. import metrics
from ..concurrency import EMPTY, cooperate, gevent_active, make_queue, spawn
from ..config import Settings
from ..errors import GatewayError, UpstreamTimeout
from .deltas import Delta

KEEPALIVE = object()      # yielded by Run.events() when the stream has been idle SSE_KEEPALIVE seconds
_CLIENT_GONE = object()
_NOTHING = object()       # no item arrived before the wait ended
YIELD_EVERY = 0.05        # seconds an upstream greenlet may run before it lets the others run
STATUS_LOG_EVERY = 10.0   # seconds between two INFO lines of one run's waiting, unless its kind changes
log = logging.getLogger("gateway.upstream")
# The Run whose job the current greenlet (or thread) works for: lets code far below the runner
# (the Hub's wait for a waking Space) report status without a Run passed down to it.
_CURRENT: contextvars.ContextVar["Run | None"] = contextvars.ContextVar("gateway_run", default=None)


def current_run() -> "Run | None":
    return _CURRENT.get()


@dataclass(frozen=True)
class StatusDelta(Delta):
    """A status line sent as reasoning_content (STREAM_STATUS=reasoning): never part of an answer."""

@dataclass(frozen=True)
class Finish:
    reason: str = "stop"


class ClientGone(GatewayError):
    """The client closed its connection; nobody will read this answer."""

    status_code = 499
    code = "client_closed_request"


class Run:
    """A queue between the greenlet that talks to the app and the response that reads it."""

    def __init__(self, settings: Settings, client_socket: socket.socket | None = None) -> None:
        self._queue = make_queue()
        self._closers: list[Callable[[], None]] = []
        self._closed = False
        self._watcher: Any = None
        self.keepalive = settings.sse_keepalive
        self.idle = settings.idle_timeout
        self.deadline = time.monotonic() + settings.total_timeout
        self.emitted = False
        self._queued = False                # anything queued yet (the first event releases the headers)
        self._ticked_at = 0.0               # the last sign of life that carried no text
        self._finished = False              # the consumer took the Finish: the rest comes at once
        self.accepted = False              # the app took the job: no transient retry any more
        self.first_event_at: float | None = None
        self._client_socket = client_socket
        self._yielded_at = time.monotonic()
        self.stream_status = getattr(settings, "stream_status", "off") == "reasoning"
        self.created = time.monotonic()
        self._status_logged: tuple[str, float] = ("", 0.0)   # (kind, when) of the last INFO line

    # ------------------------------------------------------------ producer side

    def start(self, job: Callable[["Run"], None]) -> "Run":
        spawn(self._work, job)
        if self._client_socket is not None and gevent_active():
            self._watcher = self._watch_client(self._client_socket)
        return self

    def _work(self, job: Callable[["Run"], None]) -> None:
        _CURRENT.set(self)          # the job's own greenlet or thread: its own context
        try:
            job(self)
        except BaseException as exc:  # handed to the consumer, who raises or drops it
            self._queue.put(exc if not self._closed else _CLIENT_GONE)

    def emit(self, delta: Delta) -> None:
        now = time.monotonic()
        if now - self._yielded_at > YIELD_EVERY:
            # An app whose events arrive faster than they are handled never makes this greenlet
            # wait on its socket: give the others (a /healthz, other streams) their turn.
            self._yielded_at = now
            cooperate()
        if self.first_event_at is None:
            self.first_event_at = now
        if delta:
            self.emitted = True
        elif self._queued:
            self.tick()                     # nothing new to say: only a sign of life
            return
        self._queued = True
        self._queue.put(delta)

    def tick(self) -> None:
        """The upstream is alive (a heartbeat, a wait before a retry): resets the idle timer."""
        self._ticked_at = time.monotonic()

    def status(self, text: str, *, kind: str = "wait", **fields: Any) -> None:
        """The upstream job waits (a Space waking, a queue): make it visible.

        One INFO line per kind change and at most every STATUS_LOG_EVERY seconds (fields go
        to the JSON line as they are: stage, position, eta ...); a count in
        gateway_upstream_waits_total{kind}; a sign of life for the idle timer; and, with
        STREAM_STATUS=reasoning, the text as a reasoning_content delta of a waiting stream.
        Such a delta is sent only once the stream's headers would have gone out anyway
        (SSE_KEEPALIVE seconds), so an early error keeps its real status code, and it is never
        part of a non-stream answer nor a reason to stop retrying.
        """
        if self._closed:
            return
        now = time.monotonic()
        self.tick()
        metrics.UPSTREAM_WAITS.labels(kind).inc()
        last_kind, last_at = self._status_logged
        if kind != last_kind or now - last_at >= STATUS_LOG_EVERY:
            self._status_logged = (kind, now)
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            log.info("waiting (%s): %s%s", kind, text, f" [{extra}]" if extra else "",
                     extra={"status": {"kind": kind, **fields}})
        if self.stream_status and now - self.created >= self.keepalive and not self.emitted:
            self._queued = True
            self._queue.put(StatusDelta(reasoning=text.rstrip() + "\n"))

    def finish(self, reason: str = "stop") -> None:
        self._queued = True
        self._queue.put(Finish(reason))

    def on_close(self, closer: Callable[[], None]) -> None:
        """Register what stops the upstream work; runs at once if the run is already closed."""
        if self._closed:
            closer()
        else:
            self._closers.append(closer)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> bool:
        """True when the consumer's next item is there already: it will not wait for the app.

        Every queued item is something to send (an empty delta is queued only first, to
        release the headers; a heartbeat is not queued), so a writer may hold what it has
        until this turns false and send it all in one write.
        """
        return self._finished or self._queue.qsize() > 0

    # ------------------------------------------------------------ consumer side

    def events(self) -> Iterator[Any]:
        """Deltas, then a Finish; KEEPALIVE while idle; raises the run's error."""
        last_event = last_yield = time.monotonic()
        try:
            while True:
                # What is there already needs no timer; a stream parks in get(), outside any
                # `except`, so no exception and traceback stay alive while it waits.
                item = self._queue.get_nowait() if self._queue.qsize() else _NOTHING
                if item is _NOTHING:
                    now = time.monotonic()
                    wait = min(self.keepalive - (now - last_yield), self.idle - (now - last_event),
                               self.deadline - now)
                    try:
                        item = self._queue.get(timeout=max(wait, 0.0))
                    except EMPTY:
                        pass
                if item is _NOTHING:
                    now = time.monotonic()
                    last_event = max(last_event, self._ticked_at)
                    if now >= self.deadline:
                        raise UpstreamTimeout("The Gradio app did not finish within UPSTREAM_TOTAL_TIMEOUT.")
                    if now - last_event >= self.idle:
                        raise UpstreamTimeout("The Gradio app sent nothing for UPSTREAM_IDLE_TIMEOUT seconds.")
                    if now - last_yield >= self.keepalive:
                        last_yield = now
                        yield KEEPALIVE
                    continue
                last_event = time.monotonic()
                if item is _CLIENT_GONE:
                    raise ClientGone("The client closed the connection.")
                if isinstance(item, BaseException):
                    raise item
                last_yield = last_event
                if isinstance(item, Finish):
                    self._finished = True
                    yield item
                    return
                yield item
        finally:
            self.close()

    def result(self) -> tuple[str, str, str]:
        """(content, reasoning, finish_reason) of the whole run."""
        content, reasoning, reason = [], [], "stop"
        for item in self.events():
            if isinstance(item, StatusDelta):
                continue
            if isinstance(item, Delta):
                content.append(item.content)
                reasoning.append(item.reasoning)
            elif isinstance(item, Finish):
                reason = item.reason
        return "".join(content), "".join(reasoning), reason

    def close(self) -> None:
        """Stop the upstream job (idempotent): close its event stream and cancel it."""
        if self._closed:
            return
        self._closed = True
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                closer()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()

    def _watch_client(self, sock: socket.socket) -> Any:
        """Under gevent: notice a client that hung up while nothing is being written to it.

        A read watcher on the event loop with a callback, not a greenlet polling each second:
        an open stream then costs no wake-ups and about 10 KiB less (measured by bench/).
        A client that sent more bytes after its request (pipelining, or a stray byte) keeps the
        socket readable, so a peek cannot tell a hang-up any more: from then on a timer asks
        the kernel every HANGUP_POLL seconds whether the peer shut down (POLLRDHUP), which
        unread bytes do not hide.
        """
        from gevent import get_hub

        raw = getattr(sock, "_sock", sock)     # the non-blocking OS socket under gevent's
        loop = get_hub().loop
        watcher = loop.io(sock.fileno(), 1)
        state = {"current": watcher}

        def gone() -> None:
            state["current"].stop()
            self._queue.put(_CLIENT_GONE)
            spawn(self.close)

        def hung_up() -> None:                # runs in the hub: poll(0) does not block
            if _peer_hung_up(sock.fileno()):
                gone()

        def readable() -> None:               # runs in the hub: must not block
            try:
                data = raw.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                gone()
                return
            watcher.stop()
            timer = loop.timer(HANGUP_POLL, HANGUP_POLL)
            state["current"] = timer
            timer.start(hung_up)

        watcher.start(readable)
        return _Closer(state)


HANGUP_POLL = 0.5         # seconds between two hang-up checks of a client that sent extra bytes


class _Closer:
    """Closes whichever watcher (the read watcher or the hang-up timer) is current."""

    __slots__ = ("_state",)

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def close(self) -> None:
        self._state["current"].close()


def _peer_hung_up(fd: int) -> bool:
    """True when the peer closed its side or the connection broke, unread bytes or not."""
    import select

    from gevent import monkey

    poll = monkey.get_original("select", "poll")()
    poll.register(fd, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return any(events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, events in poll.poll(0))
