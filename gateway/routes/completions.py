"""POST /v1/chat/completions."""
from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .. import payloads, pipeline, sse
from ..http import current_exchange, gateway_state, load_body, observe_run, request_id
from ..schemas import ChatRequestSchema

bp = Blueprint("completions", __name__)
chat_schema = ChatRequestSchema()


@bp.post("/chat/completions")
def create_chat_completion() -> ResponseReturnValue:
    """Create a chat completion, as JSON or as an SSE stream."""
    chat = load_body(chat_schema)                                   # 400 on bad input
    answer = pipeline.start(gateway_state(), chat, request.headers, request.environ.get("gunicorn.socket"))
    observe_run(answer.model, chat.stream, answer.source)           # for the access line and metrics
    if not chat.stream:
        return payloads.completion(chat, answer.choices())
    exchange = current_exchange()           # the body runs after the request context is gone
    return sse.response(payloads.chunks(chat, sse.prime(answer.items)), request_id(),
                        ready=lambda: answer.pending, on_error=exchange.fail if exchange is not None else None)
