"""OpenAI-shaped dicts: models, completions, chunks and usage."""
from __future__ import annotations

import math
import secrets
import time
from typing import Any, Iterable, Iterator

from .iterables import close
from .registry import Model
from .schemas import ChatRequest
from .upstream.deltas import Delta
from .upstream.run import KEEPALIVE, Finish


def model_object(model: Model) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}


def model_list(models: Iterable[Model]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


def estimate_tokens(text: str) -> int:
    """About four characters a token, the rule of thumb for English with GPT-style tokenizers."""
    return math.ceil(len(text) / 4) if text else 0


def usage(chat: ChatRequest, completion: str) -> dict[str, int]:
    # Each message also costs a few tokens of framing (role, separators), as in OpenAI's counts.
    prompt = sum(estimate_tokens(m.text) + 4 for m in chat.messages)
    done = estimate_tokens(completion)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def completion(chat: ChatRequest, content: str, reasoning: str, finish_reason: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": chat.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage(chat, content + reasoning)}


def chunks(chat: ChatRequest, events: Iterable[Any]) -> Iterator[Any]:
    """Reshape a run's events into chat.completion.chunk dicts; KEEPALIVE passes through."""
    base = {"id": completion_id(), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": chat.model}
    extra = {"usage": None} if chat.include_usage else {}
    text: list[str] = []

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], **extra}

    yield chunk({"role": "assistant", "content": ""})
    source = iter(events)
    try:
        for item in source:
            if item is KEEPALIVE:
                yield item
            elif isinstance(item, Delta) and item:
                delta: dict[str, Any] = {}
                if item.reasoning:
                    delta["reasoning_content"] = item.reasoning
                if item.content:
                    delta["content"] = item.content
                text.append(item.content + item.reasoning)
                yield chunk(delta)
            elif isinstance(item, Finish):
                yield chunk({}, item.reason)
        if chat.include_usage:
            yield {**base, "choices": [], "usage": usage(chat, "".join(text))}
    finally:
        close(source)
