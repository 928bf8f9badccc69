"""Gradio 4.20+: POST `/call/<api>` for an event id, then GET `/call/<api>/<event_id>` for its events.

The prefix is what /config says (`/gradio_api` on 5.x-6.x, none on 4.x). A `session_hash` goes in
the body only where it works (6.18+; on 4.20-6.17 it breaks the stream): there it lets `/cancel`
name the job; elsewhere Gradio uses the event id as the job's session, still one per request, and
closing the event stream is what stops the job.
"""
from __future__ import annotations

import secrets
from typing import Any, Iterator

from ...concurrency import spawn
from ..apps import App, Endpoint
from ..protocol import Event, Gradio, abort, iter_events, release
from .base import Job


class CallJob(Job):
    def __init__(self, gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> None:
        assert endpoint.api_name
        self.gradio = gradio
        self.api_name = endpoint.api_name
        self.fn_index = endpoint.fn_index
        self.what = f"call {endpoint.api_name}"
        self.session_hash = secrets.token_hex(8) if app.session_in_call else None
        self.event_id = gradio.submit(endpoint.api_name, data, self.session_hash)
        self.resp: Any = None
        self._events: Iterator[Event] = iter(())

    def events(self) -> Iterator[Event]:
        """The event stream, opened here: the job is the app's from the submit on, so a failure
        to open it is no reason to submit the prompt again."""
        self.resp = self.gradio.open_events(self.api_name, self.event_id)
        if self.closed:              # closed while opening: close() found nothing to abort
            abort(self.resp)
            return iter(())
        self._events = iter_events(self.resp, self.what)
        # A map, not a generator around the parser: iterated in C, so a waiting stream keeps
        # one Python frame level fewer on its greenlet's stack (bench/: memory per open stream).
        return map(self._seen, self._events)

    def _seen(self, event: Event) -> Event:
        if event.kind == "complete":
            self.ended = True
        return event

    def close(self) -> None:
        if self.closed or self.releasing:
            return
        self.closed = True
        if not self.ended and self.session_hash is not None and self.fn_index is not None:
            spawn(self.gradio.cancel, self.event_id, self.session_hash, self.fn_index)
        abort(self.resp)

    def _read_end(self) -> bool:
        return release(self.resp, self._events)
