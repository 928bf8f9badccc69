"""The Responses API request (CONTRACT §9), loaded into the same ChatRequest as a chat completion.

`input` items become messages: a message item keeps its role, a `function_call` becomes an
assistant turn with tool calls, a `function_call_output` a tool turn, a `reasoning` item the
model wrote earlier is left out (the app does not need its own thoughts back). Nothing is
stored, so what would need stored state (`previous_response_id`, `store: true`,
`conversation`, `background`) is a 400.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from .schemas import (REASONING_EFFORTS, ChatRequest, Message, Part, StrictBoolean, StrictInteger, StrictNumber,
                      StrictString)
from .tools import ToolCall, ToolChoiceField, ToolsField, arguments_text, check_choice, load_response_format

TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")
STATEFUL = {"previous_response_id": "previous_response_id is not supported: this gateway stores nothing; "
                                    "send the whole conversation in input",
            "conversation": "conversation is not supported: this gateway stores nothing; "
                            "send the whole conversation in input",
            "store": "store: true is not supported: this gateway stores nothing",
            "background": "background: true is not supported: this gateway stores nothing"}


@dataclass
class ResponsesRequest:
    """A Responses API request: the chat the pipeline runs, and what the response echoes."""

    chat: ChatRequest
    instructions: str | None
    text_format: dict[str, Any]
    reasoning_effort: str | None
    metadata: dict[str, Any]


def _error(path: tuple[Any, ...], message: str) -> ValidationError:
    """An error at a nested path, as marshmallow nests them (first_error makes it 'input[0].role')."""
    messages: Any = [message]
    for step in reversed(path):
        messages = {step: messages}
    return ValidationError(messages)


def _content(value: Any, where: tuple[Any, ...]) -> str | list[Part]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _error(where, "must be a string or a list of content parts")
    parts = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise _error((*where, i, "text"), "must be a string")
            parts.append(Part("text", text=text))
        elif kind == "input_image" and isinstance(part.get("image_url"), str) and part["image_url"]:
            parts.append(Part("image_url", url=part["image_url"]))
        else:
            shown = repr(kind)[:100]
            raise _error((*where, i, "type"), f"unsupported content part {shown}; use input_text, "
                         "output_text or input_image with image_url")
    return parts


def _output_text(value: Any, where: tuple[Any, ...]) -> str:
    """A function_call_output's output: a string, or parts whose text is joined."""
    content = _content(value, where)
    return content if isinstance(content, str) else "\n".join(p.text for p in content if p.type == "text")


def load_input(value: Any) -> list[Message]:
    """`input`: a string (one user turn) or a list of items."""
    if isinstance(value, str):
        return [Message("user", value)]
    if not isinstance(value, list) or not value:
        raise ValidationError("must be a string or a non-empty list of items")
    messages: list[Message] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _error((i,), "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _error((i, "role"), "must be user, assistant, system or developer")
            messages.append(Message(role, _content(item.get("content", ""), (i, "content"))))
        elif kind == "function_call":
            if not isinstance(item.get("name"), str) or not isinstance(item.get("call_id"), str):
                raise _error((i,), "a function_call needs a name and a call_id")
            call = ToolCall(item["name"], arguments_text(item.get("arguments") or "{}"), item["call_id"])
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls:   # parallel calls: one turn
                messages[-1] = Message("assistant", last.content, last.tool_calls + (call,))
            else:
                messages.append(Message("assistant", None, (call,)))
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _error((i, "call_id"), "must be a string")
            messages.append(Message("tool", _output_text(item.get("output", ""), (i, "output")),
                                    tool_call_id=item["call_id"]))
        elif kind != "reasoning":
            raise _error((i, "type"), f"unsupported input item {repr(kind)[:100]}; use message, "
                                      "function_call, function_call_output or reasoning")
    if not any(m.role != "assistant" or m.tool_calls for m in messages):
        raise ValidationError("must hold at least one message")
    return messages


class InputField(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Message]:
        return load_input(value)


class TextField(fields.Field):
    """`text`: {"format": {"type": "text" | "json_object" | "json_schema", …}}."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("must be an object")
        fmt = value.get("format")
        if fmt is not None:
            try:
                load_response_format(fmt)
            except ValidationError as exc:
                raise ValidationError({"format": exc.messages}) from None
        return value


class ReasoningField(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("must be an object")
        effort = value.get("effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            raise ValidationError({"effort": [f"must be one of {', '.join(REASONING_EFFORTS)}"]})
        return value


def _opt(field_cls: type[fields.Field], **kwargs: Any) -> fields.Field:
    return field_cls(required=False, allow_none=True, **kwargs)


class ResponsesRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    model = StrictString(required=True, validate=validate.Length(min=1))
    input = InputField(required=True)
    instructions = _opt(StrictString)
    tools = _opt(ToolsField, flat=True)
    tool_choice = _opt(ToolChoiceField)
    parallel_tool_calls = _opt(StrictBoolean)
    max_output_tokens = _opt(StrictInteger, validate=validate.Range(min=1))
    temperature = _opt(StrictNumber, validate=validate.Range(min=0, max=2))
    top_p = _opt(StrictNumber, validate=validate.Range(min=0, max=1))
    stream = _opt(StrictBoolean)
    text = _opt(TextField)
    reasoning = _opt(ReasoningField)
    metadata = _opt(fields.Dict)
    user = _opt(StrictString)
    store = _opt(StrictBoolean)
    background = _opt(StrictBoolean)
    previous_response_id = fields.Raw(required=False, allow_none=True)
    conversation = fields.Raw(required=False, allow_none=True)

    @validates_schema
    def check(self, data: dict[str, Any], **kwargs: Any) -> None:
        for name, message in STATEFUL.items():
            if data.get(name) not in (None, False):
                raise ValidationError(message, name)
        check_choice(data.get("tools") or [], data.get("tool_choice"))

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ResponsesRequest:
        messages = data["input"]
        if data.get("instructions"):
            messages = [Message("system", data["instructions"]), *messages]
        text = data.get("text") or {}
        effort = (data.get("reasoning") or {}).get("effort")
        chat = ChatRequest(model=data["model"], messages=messages, stream=bool(data.get("stream")),
                           max_tokens=data.get("max_output_tokens"), temperature=data.get("temperature"),
                           top_p=data.get("top_p"), reasoning_effort=effort, user=data.get("user"),
                           tools=data.get("tools") or [], tool_choice=data.get("tool_choice"),
                           parallel_tool_calls=data.get("parallel_tool_calls") is not False,
                           response_format=load_response_format(text["format"]) if text.get("format") else None)
        return ResponsesRequest(chat, data.get("instructions"), text.get("format") or {"type": "text"}, effort,
                                data.get("metadata") or {})
