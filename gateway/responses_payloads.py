"""The Responses API's rendering of the pipeline's Items: a `response` object, or its event stream.

Output items, in order: a `reasoning` item when the app showed reasoning, then either an
assistant `message` with one `output_text` part, or one `function_call` item per call.
A stream is `response.created`, `response.in_progress`, each item's added/delta/done
events, and `response.completed` with the whole `output`; an error after the headers
went out is `response.failed`. Every event has `type` and `sequence_number`. STREAM_STATUS
lines are for chat completion streams only: here a waiting stream gets keep-alive comments.
"""
from __future__ import annotations

from . import fastjson, sse
import secrets
import time
from typing import Any, Callable, Iterable, Iterator

from flask import Response

from .errors import GatewayError, as_gateway_error
from .iterables import close
from .pipeline import Choice, Item
from .responses_schema import ResponsesRequest
from .tools import ToolCall
from .upstream.deltas import Delta
from .upstream.run import KEEPALIVE, StatusDelta
from .payloads import estimate_tokens


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _usage(req: ResponsesRequest, output: str, reasoning: str) -> dict[str, Any]:
    prompt = sum(estimate_tokens(m.text) + 4 for m in req.chat.messages)
    done = estimate_tokens(output) + estimate_tokens(reasoning)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": done, "output_tokens_details": {"reasoning_tokens": estimate_tokens(reasoning)},
            "total_tokens": prompt + done}


def _tool_choice(req: ResponsesRequest) -> Any:
    choice = req.chat.tool_choice
    if choice is None:
        return "auto"
    return {"type": "function", "name": choice.name} if choice.mode == "function" else choice.mode


def shell(req: ResponsesRequest, response_id: str, status: str) -> dict[str, Any]:
    """The response object without output: what every event's `response` starts from."""
    chat = req.chat
    return {"id": response_id, "object": "response", "created_at": int(time.time()), "status": status,
            "model": chat.model, "output": [], "error": None, "incomplete_details": None,
            "instructions": req.instructions, "max_output_tokens": chat.max_tokens,
            "temperature": chat.temperature, "top_p": chat.top_p,
            "parallel_tool_calls": chat.parallel_tool_calls, "previous_response_id": None,
            "tool_choice": _tool_choice(req),
            "tools": [{"type": "function", "name": t.name, "description": t.description or None,
                       "parameters": t.parameters, "strict": None} for t in chat.tools],
            "reasoning": {"effort": req.reasoning_effort, "summary": None},
            "text": {"format": req.text_format}, "truncation": "disabled", "store": False,
            "metadata": req.metadata, "usage": None, "user": chat.user}


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if text or status == "completed" else []
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def call_item(call: ToolCall, arguments: str | None = None, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": _id("fc"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": status}


def response(req: ResponsesRequest, choice: Choice) -> dict[str, Any]:
    """The whole non-stream response."""
    output: list[dict[str, Any]] = []
    if choice.reasoning:
        output.append(reasoning_item(_id("rs"), choice.reasoning))
    if choice.calls:
        output.extend(call_item(call) for call in choice.calls)
    if choice.content or not choice.calls:
        output.insert(len(output) - len(choice.calls), message_item(_id("msg"), choice.content))
    calls_text = "".join(c.name + c.arguments for c in choice.calls)
    return {**shell(req, _id("resp"), "completed"), "output": output,
            "usage": _usage(req, choice.content + calls_text, choice.reasoning)}


def failed_error(err: GatewayError) -> dict[str, Any]:
    """A gateway error as a response's `error`: OpenAI's codes, the gateway's own code in the message."""
    code = "rate_limit_exceeded" if err.status_code == 429 else \
        "invalid_prompt" if 400 <= err.status_code < 500 else "server_error"
    return {"code": code, "message": f"{err.code}: {err.message}", "param": err.param, "type": err.type}


class EventStream:
    """Renders Items as Responses API events, keeping the output built so far for the last event."""

    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req
        self.base = shell(req, _id("resp"), "in_progress")
        self.output: list[dict[str, Any]] = []
        self.sequence = 0
        self.open: dict[str, Any] | None = None        # the item whose text is streaming
        self.texts: list[str] = []
        self.content = ""
        self.reasoning = ""

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return {**self.base, "status": status, "output": list(self.output), **extra}

    def begin(self) -> Iterator[dict[str, Any]]:
        yield self.event("response.created", response=self.snapshot("in_progress"))
        yield self.event("response.in_progress", response=self.snapshot("in_progress"))

    def _open(self, kind: str) -> Iterator[dict[str, Any]]:
        if self.open is not None and self.open["type"] == kind:
            return
        yield from self._close()
        item = reasoning_item(_id("rs"), "", "in_progress") if kind == "reasoning" else \
            message_item(_id("msg"), None, "in_progress")
        self.open, self.texts = item, []
        yield self.event("response.output_item.added", output_index=len(self.output), item=item)
        part = {"type": "reasoning_text", "text": ""} if kind == "reasoning" else \
            {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield self.event("response.content_part.added", item_id=item["id"], output_index=len(self.output),
                         content_index=0, part=part)

    def _close(self) -> Iterator[dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return
        text, where = "".join(self.texts), {"item_id": item["id"], "output_index": len(self.output),
                                            "content_index": 0}
        if item["type"] == "reasoning":
            done = reasoning_item(item["id"], text)
            yield self.event("response.reasoning_text.done", **where, text=text)
        else:
            done = message_item(item["id"], text)
            yield self.event("response.output_text.done", **where, text=text, logprobs=[])
        yield self.event("response.content_part.done", **where, part=done["content"][0])
        yield self.event("response.output_item.done", output_index=len(self.output), item=done)
        self.output.append(done)

    def delta(self, delta: Delta) -> Iterator[dict[str, Any]]:
        for kind, text in (("reasoning", delta.reasoning), ("message", delta.content)):
            if not text:
                continue
            yield from self._open(kind)
            assert self.open is not None
            self.texts.append(text)
            where = {"item_id": self.open["id"], "output_index": len(self.output), "content_index": 0}
            if kind == "reasoning":
                self.reasoning += text
                yield self.event("response.reasoning_text.delta", **where, delta=text)
            else:
                self.content += text
                yield self.event("response.output_text.delta", **where, delta=text, logprobs=[])

    def calls(self, calls: tuple[ToolCall, ...]) -> Iterator[dict[str, Any]]:
        yield from self._close()
        for call in calls:
            index = len(self.output)
            item = call_item(call, arguments="", status="in_progress")
            yield self.event("response.output_item.added", output_index=index, item=item)
            yield self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                             delta=call.arguments)
            yield self.event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                             name=call.name, arguments=call.arguments)
            done = {**item, "arguments": call.arguments, "status": "completed"}
            yield self.event("response.output_item.done", output_index=index, item=done)
            self.output.append(done)
            self.content += call.name + call.arguments

    def end(self) -> Iterator[dict[str, Any]]:
        yield from self._close()
        if not self.output:          # an empty answer is still an (empty) message
            yield from self._open("message")
            yield from self._close()
        yield self.event("response.completed", response=self.snapshot(
            "completed", usage=_usage(self.req, self.content, self.reasoning)))

    def failed(self, err: GatewayError) -> dict[str, Any]:
        return self.event("response.failed", response=self.snapshot("failed", error=failed_error(err)))


def events(req: ResponsesRequest, items: Iterable[Any], request_id: str | None = None,
           on_error: Callable[[GatewayError], None] | None = None) -> Iterator[Any]:
    """The event stream of one response; KEEPALIVE passes through; an error becomes response.failed."""
    stream = EventStream(req)
    source = iter(items)
    try:
        yield from stream.begin()
        for item in source:
            if item is KEEPALIVE:
                yield item
            elif isinstance(item, Item) and item.delta and not isinstance(item.delta, StatusDelta):
                yield from stream.delta(item.delta)
            elif isinstance(item, Item) and item.calls:
                yield from stream.calls(item.calls)
        yield from stream.end()
    except GeneratorExit:
        raise
    except Exception as exc:       # after the headers went out, the error travels in the stream
        err = as_gateway_error(exc, request_id)
        if on_error is not None:
            on_error(err)
        if err.status_code != 499:
            yield stream.failed(err)
    finally:
        close(source)


def encode(item: Any) -> bytes:
    if item is KEEPALIVE:
        return b": keep-alive\n\n"
    text = fastjson.dumps(item)
    return f"event: {item['type']}\n".encode() + b"data: " + text.encode("utf-8", "backslashreplace") + b"\n\n"


def frames(items: Iterable[Any], ready: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """SSE frames with `event:` lines, as OpenAI sends them; frames ready together go in one write."""
    source = iter(items)
    batch: list[bytes] = []
    try:
        for item in source:
            batch.append(encode(item))
            if ready is None or not ready():
                yield b"".join(batch)
                batch.clear()
        if batch:
            yield b"".join(batch)
    finally:
        close(source)


def stream_response(items: Iterable[Any], ready: Callable[[], bool] | None = None) -> Response:
    return sse.stream(frames(items, ready))
