"""One upstream job, in whichever protocol the app's Gradio generation speaks.

The seam: `start(gradio, app, endpoint, data)` submits the job and returns a `Job`, whose
`events()` are the same on every generation (UPSTREAM-NOTES.md, "Gradio generations"):

    generating  the full outputs so far (diffs already applied)
    complete    the full final outputs
    error       the app's error: {"error", "title"}, a plain string, or None when hidden
    heartbeat   a sign of life
    status      {"stage": "queue" | "processing", "rank", "queue_size", "eta"}

`close()` stops the job by the protocol's own means (from any greenlet, at any time) and
`release()`, after `complete`, gives the connection back for reuse where the protocol can.
The runner and the mapping do not care which family is behind them:

    call.py       4.20+ (`/call/<api>`, with or without the /gradio_api prefix)
    queue_sse.py  4.0-4.19 (`/queue/join` + `/queue/data`), and unnamed events of 4.20+
    queue_ws.py   3.x (the websocket queue at `/queue/join`)
    direct.py     events that skip the queue (`queue=False`) on 3.x and 4.0-4.19: `/run/predict`
"""
from __future__ import annotations

from typing import Any

from ..apps import CALL, SSE_QUEUE, SSE_V0, WS, App, Endpoint
from ..protocol import Event, Gradio
from .base import Job

__all__ = ["Event", "Job", "start"]


def start(gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> Job:
    """Submit one job; an error before the app took it is raised here."""
    from . import call, direct, queue_sse, queue_ws   # noqa: PLC0415 - the families load on first use
    if app.protocol == CALL:
        if endpoint.api_name:
            return call.CallJob(gradio, app, endpoint, data)
        return queue_sse.QueueJob(gradio, app, endpoint, data)      # an unnamed event: by fn_index
    if not endpoint.queued:
        return direct.DirectJob(gradio, app, endpoint, data)
    if app.protocol == SSE_QUEUE:
        return queue_sse.QueueJob(gradio, app, endpoint, data)
    if app.protocol == SSE_V0:
        return queue_sse.QueueJobV0(gradio, app, endpoint, data)
    assert app.protocol == WS, app.protocol
    return queue_ws.WsJob(gradio, app, endpoint, data)
