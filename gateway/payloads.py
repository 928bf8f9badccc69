"""OpenAI-shaped dicts: models, completions, chunks and usage."""
from __future__ import annotations

import math
import secrets
import time
from typing import Any, Iterable, Iterator

from .iterables import chained, flat_map
from .registry import Model
from .schemas import ChatRequest
from .pipeline import Choice
from .tools import ToolCall
from .upstream.run import KEEPALIVE


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


def tool_calls(calls: Iterable[ToolCall], streamed: bool = False) -> list[dict[str, Any]]:
    """Calls as chat completions has them: `arguments` a JSON string; in streams with `index`."""
    return [{**({"index": i} if streamed else {}), "id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}} for i, call in enumerate(calls)]


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content}
    if choice.reasoning:
        message["reasoning_content"] = choice.reasoning
    if choice.calls:
        message["content"] = choice.content or None
        message["tool_calls"] = tool_calls(choice.calls)
    return message


def completion(chat: ChatRequest, choices: list[Choice]) -> dict[str, Any]:
    text = "".join(c.content + c.reasoning + "".join(t.name + t.arguments for t in c.calls) for c in choices)
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": chat.model,
            "choices": [{"index": c.index, "message": _message(c), "logprobs": None,
                         "finish_reason": c.finish_reason} for c in choices],
            "usage": usage(chat, text)}


def chunks(chat: ChatRequest, items: Iterable[Any]) -> Iterator[Any]:
    """Reshape a pipeline's Items into chat.completion.chunk dicts; KEEPALIVE passes through.

    With n > 1, the choices' chunks come interleaved, each with its own `index`.
    """
    base = {"id": completion_id(), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": chat.model}
    extra = {"usage": None} if chat.include_usage else {}
    text: list[str] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}], **extra}

    def reshape(item: Any) -> tuple[Any, ...]:
        if item is KEEPALIVE:
            return (item,)
        if item.delta:
            delta: dict[str, Any] = {}
            if item.delta.reasoning:
                delta["reasoning_content"] = item.delta.reasoning
            if item.delta.content:
                delta["content"] = item.delta.content
            text.append(item.delta.content + item.delta.reasoning)
            return (chunk(item.index, delta),)
        if item.calls:
            text.extend(call.name + call.arguments for call in item.calls)
            return (chunk(item.index, {"tool_calls": tool_calls(item.calls, streamed=True)}),)
        if item.finish is not None:
            return (chunk(item.index, {}, item.finish),)
        return ()

    def usage_chunk() -> Iterator[Any]:        # read once every item has been
        if chat.include_usage:
            yield {**base, "choices": [], "usage": usage(chat, "".join(text))}

    source = iter(items)
    # A list's iterator lets go of the list once read: the role chunks are not kept for the
    # stream's life, as a tuple given to the chain would be.
    roles = iter([chunk(index, {"role": "assistant", "content": ""}) for index in range(chat.n)])
    return chained(source, roles, flat_map(reshape, source), usage_chunk())    # iterated in C
