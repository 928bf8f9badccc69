"""Gradio 4.0-4.19: the SSE queue. Also the way to an unnamed event of a 4.20+ app.

sse_v1, sse_v2 (4.9-4.19) and later: POST `/queue/join` {data, fn_index, session_hash, …} gives
an event id; GET `/queue/data?session_hash=…` streams the session's messages, each tagged with
its event id. From sse_v2 on, a generator's `process_generating` carries diffs of its outputs.
sse (4.0-4.8): GET `/queue/join?fn_index=…&session_hash=…` streams the messages and asks for
the data with `send_data`, which goes in a POST to `/queue/data`.

Each job has a session of its own, so the stream carries its messages only. Closing the stream
is what stops the job (Gradio cleans the session's events on disconnect); `/reset` with the
event id also stops a generator between two yields.
"""
from __future__ import annotations

import secrets
from typing import Any, Iterator
from urllib.parse import urlencode

from ...concurrency import spawn
from ...errors import UpstreamError
from ..apps import App, Endpoint
from ..protocol import Event, Gradio, abort, iter_events, mapped_errors, release
from .base import Job, QueueMessages

DIFF_PROTOCOLS = ("sse_v2", "sse_v2.1", "sse_v3")


class QueueJob(Job):
    def __init__(self, gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> None:
        self.gradio = gradio
        self.fn_index = endpoint.fn_index
        self.what = f"call {endpoint.key}"
        self.session_hash = secrets.token_hex(8)
        self.messages = QueueMessages(diffs=endpoint.generator and app.wire_protocol in DIFF_PROTOCOLS,
                                      limit=gradio.max_bytes)
        self.resp = None
        answer = gradio.post_json("/queue/join", {"data": data, "fn_index": endpoint.fn_index,
                                                  "session_hash": self.session_hash,
                                                  "event_data": None, "trigger_id": None}, self.what)
        self.event_id = answer.get("event_id") if isinstance(answer, dict) else None
        if not isinstance(self.event_id, str):
            raise UpstreamError(f"The Gradio app gave no event id ({self.what}).")

    def events(self) -> Iterator[Event]:
        """The session's stream, opened here: the job is the app's from the join on."""
        self.resp = self.gradio.open_stream("/queue/data?" + urlencode({"session_hash": self.session_hash}),
                                            self.what)
        if self.closed:
            abort(self.resp)
            return
        self._raw = iter_events(self.resp, self.what)
        for raw in self._raw:
            if raw.kind == "heartbeat":               # a long message still arriving
                yield raw
                continue
            msg = raw.data
            if isinstance(msg, dict) and msg.get("event_id") not in (None, self.event_id):
                continue
            with mapped_errors(self.what):
                event = self.messages.read(msg)
            if event is None:
                continue
            if event.kind == "complete":
                self.ended = True
            yield event
            if event.kind in ("complete", "error"):
                return

    def close(self) -> None:
        if self.closed or self.releasing:
            return
        self.closed = True
        if not self.ended and self.event_id:
            spawn(_stop, self.gradio, self.event_id, self.session_hash, self.fn_index)
        abort(self.resp)

    def _read_end(self) -> bool:
        """The session's stream ends just after its last event completes (sse_v3 says
        close_stream first)."""
        for raw in self._raw:
            if not (isinstance(raw.data, dict) and raw.data.get("msg") in ("close_stream", "heartbeat")):
                return False
        self.resp.release_conn()
        return True


def _stop(gradio: Gradio, event_id: str, session_hash: str, fn_index: int | None) -> None:
    """`/reset` ends a generator between two yields (4.x+); `/cancel` a running job (4.22+)."""
    gradio.cancel(event_id, session_hash, fn_index, "/reset")
    gradio.cancel(event_id, session_hash, fn_index, "/cancel")


class QueueJobV0(Job):
    """sse (4.0-4.8): the stream comes first and asks for the data."""

    def __init__(self, gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> None:
        self.gradio = gradio
        self.fn_index = endpoint.fn_index
        self.data = data
        self.what = f"call {endpoint.key}"
        self.session_hash = secrets.token_hex(8)
        self.event_id: str | None = None
        self.messages = QueueMessages(diffs=False)
        self.resp = gradio.open_stream("/queue/join?" + urlencode(
            {"fn_index": endpoint.fn_index, "session_hash": self.session_hash}), self.what)

    def events(self) -> Iterator[Event]:
        self._raw = iter_events(self.resp, self.what)
        for raw in self._raw:
            if raw.kind == "heartbeat":               # a long message still arriving
                yield raw
                continue
            msg = raw.data
            if isinstance(msg, dict) and msg.get("msg") == "send_data":
                self.event_id = msg.get("event_id") if isinstance(msg.get("event_id"), str) else None
                self.gradio.post_json("/queue/data", {"data": self.data, "fn_index": self.fn_index,
                                                      "session_hash": self.session_hash,
                                                      "event_id": self.event_id, "event_data": None},
                                      self.what)
                continue
            with mapped_errors(self.what):
                event = self.messages.read(msg)
            if event is None:
                continue
            if event.kind == "complete":
                self.ended = True
            yield event
            if event.kind in ("complete", "error"):
                return

    def close(self) -> None:
        if self.closed or self.releasing:
            return
        self.closed = True
        if not self.ended and self.event_id:
            spawn(self.gradio.cancel, self.event_id, self.session_hash, self.fn_index, "/reset")
        abort(self.resp)

    def _read_end(self) -> bool:
        return release(self.resp, self._raw)
