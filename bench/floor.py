"""The floor: a Flask app that answers /v1/chat/completions with a canned answer, no upstream.

Served by the same gunicorn config as the gateway, it shows what gunicorn + gevent +
Flask alone cost per request on this machine, the part of the gateway's CPU no change
to the gateway's own code can remove. A non-stream request gets a canned completion; a
stream gets the chunks the gateway would send for the stand-in's answer of `chunks=N`
words (N, default 8, read from the message as the stand-in reads it): a role chunk, N
content chunks, a finish chunk, `data: [DONE]`, each framed by a generator and written
as it is yielded.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/v1/chat/completions")
def create_chat_completion() -> Any:
    """A canned completion, or a canned stream of chunks."""
    body = request.get_json()
    if body.get("stream"):
        found = re.search(r"chunks=(\d+)", body["messages"][-1]["content"])
        return stream(body["model"], int(found.group(1)) if found else 8)
    return {"id": "chatcmpl-floor", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "w0 w1 w2 w3 w4 w5 w6 w7"},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}


def stream(model: str, words: int) -> Response:
    """The gateway's SSE response (gateway/sse.py) around chunks shaped as gateway/payloads.py's."""
    base = {"id": "chatcmpl-floor", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def deltas() -> Iterator[dict[str, Any]]:
        yield chunk({"role": "assistant", "content": ""})
        for i in range(words):
            yield chunk({"content": f" w{i}" if i else "w0"})
        yield chunk({}, "stop")

    def frames() -> Iterator[bytes]:
        for item in deltas():
            yield b"data: " + json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    resp = Response(frames(), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
