"""POST /v1/responses: OpenAI's Responses API, stateless, over the same pipeline as chat completions."""
from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .. import pipeline, responses_payloads, sse
from ..http import current_exchange, gateway_state, load_body, observe_run, request_id
from ..responses_schema import ResponsesRequestSchema

bp = Blueprint("responses", __name__)
responses_schema = ResponsesRequestSchema()


@bp.post("/responses")
def create_response() -> ResponseReturnValue:
    """Create a model response, as JSON or as an SSE stream of events."""
    req = load_body(responses_schema)                               # 400 on bad input, stored state
    answer = pipeline.start(gateway_state(), req.chat, request.headers, request.environ.get("gunicorn.socket"))
    observe_run(answer.model, req.chat.stream, answer.source)       # for the access line and metrics
    if not req.chat.stream:
        return responses_payloads.response(req, answer.choices()[0])
    exchange = current_exchange()
    events = responses_payloads.events(req, sse.prime(answer.items), request_id(),
                                       on_error=exchange.fail if exchange is not None else None)
    return responses_payloads.stream_response(events, ready=lambda: answer.pending)
