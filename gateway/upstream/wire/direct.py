"""An event that skips the queue (`queue=False`, or a 3.x app without `.queue()`): one POST to
`/run/predict` with the event's fn_index, answered with the outputs or `{"error": …}`."""
from __future__ import annotations

import secrets
from typing import Any, Iterator

from ..apps import App, Endpoint
from ..protocol import Event, Gradio
from .base import Job


class DirectJob(Job):
    def __init__(self, gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> None:
        self.what = f"call {endpoint.key}"
        body = {"data": data, "fn_index": endpoint.fn_index, "session_hash": secrets.token_hex(8),
                "event_data": None}
        self.answer: Any = gradio.post_json("/run/predict", body, self.what, app_errors=True)

    def events(self) -> Iterator[Event]:
        answer = self.answer if isinstance(self.answer, dict) else {}
        if "error" in answer or not isinstance(answer.get("data"), list):
            yield Event("error", {"error": answer.get("error")} if answer.get("error") else None)
            return
        self.ended = True
        yield Event("complete", answer["data"])
