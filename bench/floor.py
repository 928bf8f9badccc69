"""The floor: a Flask app that answers /v1/chat/completions with a canned completion, no upstream.

Served by the same gunicorn config as the gateway, it shows what gunicorn + gevent +
Flask alone cost per request on this machine, the part of the gateway's CPU no change
to the gateway's own code can remove.
"""
from __future__ import annotations

import time

from flask import Flask, request

app = Flask(__name__)


@app.post("/v1/chat/completions")
def create_chat_completion() -> dict:
    body = request.get_json()
    return {"id": "chatcmpl-floor", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "w0 w1 w2 w3 w4 w5 w6 w7"},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
