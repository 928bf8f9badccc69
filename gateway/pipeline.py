"""One pipeline behind /v1/chat/completions and /v1/responses: a validated chat in, choice items out.

    ChatRequest -> model (404) -> emulation (400 tools_not_supported) -> credential
      -> n upstream Runs (Upstream.start, each its own session) -> merged, read by the emulation
      -> Items: (index, delta | calls | finish), and KEEPALIVE while idle

Each API renders the same Items its own way (payloads.py, responses_payloads.py), so both get the
same mapping, credentials, errors, cancellation and bounds.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from . import admission, credentials, emulation
from .concurrency import make_queue, spawn
from .emulation import Calls, Emulation
from .http import note_requested_model
from .iterables import close, flat_map
from .registry import Model
from .schemas import ChatRequest
from .tools import ToolCall
from .upstream.deltas import Delta
from .upstream.images import check_image_count
from .upstream.run import KEEPALIVE, Finish, Run, StatusDelta

_END = object()


@dataclass(frozen=True)
class Item:
    """Something choice `index` produced: a delta, tool calls, or its finish reason."""

    index: int
    delta: Delta | None = None
    calls: tuple[ToolCall, ...] = ()
    finish: str | None = None


@dataclass
class Choice:
    """One whole choice, for a non-stream answer."""

    index: int
    content: str = ""
    reasoning: str = ""
    calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"


@dataclass
class Answer:
    """The running answer to one request: its items and what the response layer needs to know."""

    chat: ChatRequest
    model: Model
    source: Any                                  # a Run, or a Fanout of n Runs
    emulation: Emulation
    items: Iterator[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.items = read(self.source.events(), self.emulation, self.chat.n)

    @property
    def pending(self) -> bool:
        return self.source.pending

    def choices(self) -> list[Choice]:
        return collect(self.items, self.chat.n)


def start(state: Any, chat: ChatRequest, headers: Mapping[str, str],
          client_socket: socket.socket | None) -> Answer:
    """Validate what needs the model, then start the request's upstream work."""
    note_requested_model(chat.model)                                 # the access line names it
    with_images = check_image_count(chat.messages, state.settings.max_images_per_request) > 0
    model = state.registry.get(chat.model)                          # 404 on unknown model
    ticket = admission.admit(state, model.id)                        # 404/429 by the key's allow-list and limits
    plan = emulation.for_request(model, chat)                        # 400 tools_not_supported
    upstream_chat = emulation.upstream_chat(chat, plan)
    credential = credentials.resolve(headers, state.settings, ticket.hf_token)
    # Every run watches the client's socket (one more read watcher on the event loop each), so
    # a client that leaves is noticed while any of them is still working.
    # The runs share the request's images: each URL fetched once, uploaded once per app.
    # (None without images: a chat of text keeps no image store for as long as it streams.)
    images = state.upstream.images(runs=chat.n) if with_images else None
    runs = [state.upstream.start(model, upstream_chat, credential, client_socket, images) for _ in range(chat.n)]
    source = runs[0] if len(runs) == 1 else Fanout(runs)
    # Metered for the key: its stream slot is freed and its tokens counted when the answer ends.
    return Answer(chat, model, ticket.follow(chat, source), plan)


def read(events: Iterator[Any], plan: Emulation, n: int) -> Iterator[Any]:
    """A run's (or a Fanout's) events as Items, each choice read by its own AnswerReader."""
    readers = [plan.reader() for _ in range(n)]

    def items(event: Any) -> tuple[Any, ...]:
        index, event = event if isinstance(event, tuple) else (0, event)
        if event is KEEPALIVE:
            return (event,)
        if isinstance(event, StatusDelta) or not plan.active and isinstance(event, Delta):
            # a waiting stream's status line (never part of an answer), or the common case
            return (Item(index, delta=event),)
        if isinstance(event, Delta):
            # held or empty: still an Item, a sign that the app answered (sse.prime)
            return tuple(Item(index, delta=delta) for delta in readers[index].feed(event)) or (Item(index),)
        if isinstance(event, Finish):
            return tuple(_finished(index, out) for out in readers[index].finish(event.reason))
        return ()
    return flat_map(items, events)       # iterated in C (iterables.Chained)


def _finished(index: int, out: Any) -> Item:
    if isinstance(out, Delta):
        return Item(index, delta=out)
    if isinstance(out, Calls):
        return Item(index, calls=out.calls)
    return Item(index, finish=out)


def collect(items: Iterator[Any], n: int) -> list[Choice]:
    choices = [Choice(i) for i in range(n)]
    parts: list[tuple[list[str], list[str]]] = [([], []) for _ in range(n)]
    for item in items:
        if not isinstance(item, Item):
            continue
        choice = choices[item.index]
        if item.delta is not None and not isinstance(item.delta, StatusDelta):
            parts[item.index][0].append(item.delta.content)
            parts[item.index][1].append(item.delta.reasoning)
        choice.calls += item.calls
        if item.finish is not None:
            choice.finish_reason = item.finish
    for choice, (content, reasoning) in zip(choices, parts):
        choice.content, choice.reasoning = "".join(content), "".join(reasoning)
    return choices


class Fanout:
    """n Runs read together: their events interleaved as (index, event), in arrival order.

    A greenlet (a thread outside gevent) per run moves its events into one queue. Any run's
    error (a client gone included) ends the whole answer, and closing the Fanout closes every
    run. A run that finished closes itself: that must not end the others.
    """

    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self._queue = make_queue()
        self._closed = False
        self._closers: list[Callable[[], None]] = []
        for index, run in enumerate(runs):
            spawn(self._pump, index, run)

    def _pump(self, index: int, run: Run) -> None:
        events = run.events()
        try:
            for event in events:
                if self._closed:
                    return
                self._queue.put((index, event))
        except BaseException as exc:   # handed to the reader, who raises it
            self._queue.put((index, exc))
        finally:
            close(events)
            self._queue.put((index, _END))

    @property
    def pending(self) -> bool:
        return self._queue.qsize() > 0

    @property
    def deadline(self) -> float:
        return max(run.deadline for run in self.runs)

    @property
    def first_event_at(self) -> float | None:
        times = [t for t in (r.first_event_at for r in self.runs) if t is not None]
        return min(times) if times else None

    def on_close(self, closer: Callable[[], None]) -> None:
        if self._closed:
            closer()
        else:
            self._closers.append(closer)

    def events(self) -> Iterator[tuple[int, Any]]:
        running, last_keepalive = len(self.runs), 0.0
        try:
            while running:
                index, event = self._queue.get()
                if event is _END:
                    running -= 1
                elif isinstance(event, BaseException):
                    raise event
                elif event is KEEPALIVE:
                    now = time.monotonic()       # n idle runs: one keep-alive, not n
                    if now - last_keepalive >= 0.5:
                        last_keepalive = now
                        yield index, event
                else:
                    yield index, event
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for run in self.runs:
            run.close()
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()
