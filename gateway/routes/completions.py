"""POST /v1/chat/completions."""
from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .. import admission, credentials, payloads, sse
from ..http import gateway_state, load_body, note_requested_model, observe_run, observe_stream, request_id
from ..schemas import ChatRequestSchema
from ..upstream.images import check_image_count

bp = Blueprint("completions", __name__)
chat_schema = ChatRequestSchema()


@bp.post("/chat/completions")
def create_chat_completion() -> ResponseReturnValue:
    """Create a chat completion, as JSON or as an SSE stream."""
    state = gateway_state()
    chat = load_body(chat_schema)                                   # 400 on bad input
    note_requested_model(chat.model)                                # the access line names it
    check_image_count(chat.messages, state.settings.max_images_per_request)
    model = state.registry.get(chat.model)                          # 404 on unknown model
    ticket = admission.admit(state, model.id)                       # 404/429 by the key's allow-list and limits
    credential = credentials.resolve(request.headers, state.settings, ticket.hf_token)
    run = state.upstream.start(model, chat, credential, request.environ.get("gunicorn.socket"))
    observe_run(model, chat.stream, run)                            # for the access line and metrics
    run = ticket.follow(chat, run)                                  # frees the key's slot, counts its tokens
    if not chat.stream:
        return payloads.completion(chat, *run.result())
    return sse.response(observe_stream(payloads.chunks(chat, sse.prime(run.events()))), request_id(),
                        ready=lambda: run.pending)
