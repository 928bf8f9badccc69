"""Marshmallow schemas: the chat request and the models file."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from .concurrency import cooperate
from .tools import (ResponseFormat, ResponseFormatField, Tool, ToolCall, ToolChoice, ToolChoiceField, ToolsField,
                    arguments_text, check_choice)

ROLES = ("system", "developer", "user", "assistant", "tool")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SPACE_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPACE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$")
MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.:@+/-]{0,127}$")
FLAGS = re.compile(r"^[0-5][0-2]$")
STRATEGIES = ("failover", "balance")


SPACE_PAGE = re.compile(r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/spaces/([\w.-]+/[\w.-]+)/?(?:[?#].*)?$",
                        re.I)


def space_page_hint(space: str) -> str | None:
    """A Space's web page given where its id belongs: the page is HTML, not the Gradio app."""
    m = SPACE_PAGE.match(space.strip())
    if m is None:
        return None
    return (f"{space} is the Space's web page, not its Gradio app: use the Space id {m.group(1)!r} "
            "(the gateway finds the app's host through the Hub)")


@dataclass(frozen=True)
class Part:
    type: str
    text: str = ""
    url: str = ""


@dataclass(frozen=True)
class Message:
    role: str
    content: str | None | list[Part]
    tool_calls: tuple[ToolCall, ...] = ()      # an assistant turn that called tools
    tool_call_id: str | None = None            # a tool turn: the call it answers

    @property
    def text(self) -> str:
        """The message's text, without images."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text")

    @property
    def image_urls(self) -> list[str]:
        if isinstance(self.content, list):
            return [p.url for p in self.content if p.type == "image_url"]
        return []


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    n: int = 1
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True             # false: at most one call per answer
    response_format: ResponseFormat | None = None


class StrictNumber(fields.Field):
    """A JSON number: no strings, no booleans (OpenAI rejects both)."""

    default_error_messages = {"invalid": "must be a number"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise self.make_error("invalid")
        return float(value)


class StrictInteger(fields.Field):
    default_error_messages = {"invalid": "must be an integer"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class StrictBoolean(fields.Field):
    default_error_messages = {"invalid": "must be a boolean"}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictString(fields.String):
    default_error_messages = {"invalid": "must be a string"}


class StopField(fields.Field):
    """`stop`: a string or a list of up to four strings."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise ValidationError("must be a string or a list of strings")
        if len(items) > 4:
            raise ValidationError("must hold at most 4 sequences")
        return [s for s in items if s]


class ContentField(fields.Field):
    """`content`: a string, null, or a list of text and image_url parts."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string, null or a list of content parts")
        return [_part(item, i) for i, item in enumerate(value)]


def _part(item: Any, index: int) -> Part:
    if not isinstance(item, dict):
        raise ValidationError({index: ["must be an object"]})
    kind = item.get("type")
    if kind == "text":
        if not isinstance(item.get("text"), str):
            raise ValidationError({index: {"text": ["must be a string"]}})
        return Part("text", text=item["text"])
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise ValidationError({index: {"image_url": {"url": ["must be a non-empty string"]}}})
        return Part("image_url", url=url)
    shown = repr(kind) if len(repr(kind)) <= 100 else repr(kind)[:100] + "..."   # never echo a huge value
    raise ValidationError({index: {"type": [f"unsupported content part type {shown}; "
                                            "use 'text' or 'image_url'"]}})


class MessagesField(fields.Field):
    """`messages`: a non-empty list of {role, content}, checked by hand.

    The same checks and error paths as a List of Nested(MessageSchema), at about a tenth of the
    cost per message: 550,000 empty messages (a 10 MB body) would otherwise keep a worker busy
    for seconds. Long lists let other greenlets run as they go.
    """

    default_error_messages = {"invalid": "Not a valid list."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Message]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        if not value:
            raise ValidationError("must hold at least one message")
        messages = []
        for i, item in enumerate(value):
            if i % 4096 == 4095:
                cooperate()
            messages.append(_message(item, i))
        return messages


def _message(item: Any, index: int) -> Message:
    if not isinstance(item, dict):
        raise ValidationError({index: {"_schema": ["Invalid input type."]}})
    if "role" not in item:
        raise ValidationError({index: {"role": ["Missing data for required field."]}})
    role = item["role"]
    if role is None:
        raise ValidationError({index: {"role": ["Field may not be null."]}})
    if not isinstance(role, str):
        raise ValidationError({index: {"role": ["must be a string"]}})
    if role not in ROLES:
        raise ValidationError({index: {"role": [f"Must be one of: {', '.join(ROLES)}."]}})
    if item.get("tool_calls") is not None or item.get("tool_call_id") is not None:
        return _tool_turn(item, index, role)      # rare: the common path below stays as it was
    content = item.get("content")
    if content is None or content == "":
        return _EMPTY[role, content]         # one shared object: 550,000 empty messages allocate none
    if isinstance(content, str):
        return Message(role, content)
    if not isinstance(content, list):
        raise ValidationError({index: {"content": ["must be a string, null or a list of content parts"]}})
    try:
        return Message(role, [_part(part, j) for j, part in enumerate(content)])
    except ValidationError as exc:
        raise ValidationError({index: {"content": exc.messages}}) from None


_EMPTY = {(role, content): Message(role, content) for role in ROLES for content in (None, "")}


def load_tool_calls(value: Any) -> tuple[ToolCall, ...]:
    """An assistant turn's calls: [{id, type: function, function: {name, arguments}}]."""
    if not isinstance(value, list):
        raise ValidationError("must be a list of tool calls")
    calls = []
    for i, item in enumerate(value):
        spec = item.get("function") if isinstance(item, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValidationError({i: {"function": ["must be an object with a name"]}})
        call_id = item.get("id") if isinstance(item.get("id"), str) else ""
        calls.append(ToolCall(spec["name"], arguments_text(spec.get("arguments") or "{}"), call_id))
    return tuple(calls)


def _tool_turn(item: dict[str, Any], index: int, role: str) -> Message:
    """A turn that called tools (assistant) or answers a call (tool)."""
    plain = _message({"role": role, "content": item.get("content")}, index)
    calls: tuple[ToolCall, ...] = ()
    if item.get("tool_calls") is not None:
        try:
            calls = load_tool_calls(item["tool_calls"])
        except ValidationError as exc:
            raise ValidationError({index: {"tool_calls": exc.messages}}) from None
    call_id = item.get("tool_call_id")
    if call_id is not None and not isinstance(call_id, str):
        raise ValidationError({index: {"tool_call_id": ["must be a string"]}})
    return Message(role, plain.content, calls, call_id)


class MessageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    role = StrictString(required=True, validate=validate.OneOf(ROLES))
    content = ContentField(required=False, allow_none=True, load_default=None)
    tool_calls = fields.Function(deserialize=load_tool_calls, required=False, allow_none=True)
    tool_call_id = StrictString(required=False, allow_none=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Message:
        return Message(role=data["role"], content=data.get("content"), tool_calls=data.get("tool_calls") or (),
                       tool_call_id=data.get("tool_call_id"))


class StreamOptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    include_usage = StrictBoolean(allow_none=True)


def _opt(field_cls: type[fields.Field], **kwargs: Any) -> fields.Field:
    return field_cls(required=False, allow_none=True, **kwargs)


class ChatRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    model = StrictString(required=True, validate=validate.Length(min=1))
    messages = MessagesField(required=True)
    stream = _opt(StrictBoolean)
    stream_options = fields.Nested(StreamOptionsSchema, required=False, allow_none=True)
    max_tokens = _opt(StrictInteger, validate=validate.Range(min=1))
    max_completion_tokens = _opt(StrictInteger, validate=validate.Range(min=1))
    temperature = _opt(StrictNumber, validate=validate.Range(min=0, max=2))
    top_p = _opt(StrictNumber, validate=validate.Range(min=0, max=1))
    top_k = _opt(StrictInteger, validate=validate.Range(min=0))
    repetition_penalty = _opt(StrictNumber, validate=validate.Range(min=0, min_inclusive=False))
    presence_penalty = _opt(StrictNumber, validate=validate.Range(min=-2, max=2))
    frequency_penalty = _opt(StrictNumber, validate=validate.Range(min=-2, max=2))
    stop = _opt(StopField)
    seed = _opt(StrictInteger)
    n = _opt(StrictInteger, validate=validate.Range(min=1, max=8))
    reasoning_effort = _opt(StrictString, validate=validate.OneOf(REASONING_EFFORTS))
    user = _opt(StrictString)
    tools = _opt(ToolsField)
    tool_choice = _opt(ToolChoiceField)
    parallel_tool_calls = _opt(StrictBoolean)
    response_format = _opt(ResponseFormatField)

    @validates_schema(pass_original=True)
    def check_tools(self, data: dict[str, Any], original: dict[str, Any], **kwargs: Any) -> None:
        check_choice(data.get("tools") or [], data.get("tool_choice"))
        # The legacy fields tools replaced: refused by name, so a client that sends them learns why
        # it gets text back instead of a call.
        if original.get("functions"):
            raise ValidationError("the legacy 'functions' field is not supported: send them as tools, "
                                  '[{"type": "function", "function": {"name", "parameters"}}]', "functions")
        if original.get("function_call") not in (None, "none", "auto"):
            raise ValidationError("the legacy 'function_call' field is not supported: use tool_choice",
                                  "function_call")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ChatRequest:
        options = data.get("stream_options") or {}
        max_tokens = data.get("max_completion_tokens") or data.get("max_tokens")
        return ChatRequest(
            model=data["model"], messages=data["messages"], stream=bool(data.get("stream")),
            include_usage=bool(options.get("include_usage")), max_tokens=max_tokens,
            stop=data.get("stop") or [], n=data.get("n") or 1, tools=data.get("tools") or [],
            tool_choice=data.get("tool_choice"), parallel_tool_calls=data.get("parallel_tool_calls") is not False,
            response_format=data.get("response_format"),
            **{k: data.get(k) for k in ("temperature", "top_p", "top_k", "repetition_penalty",
                                        "presence_penalty", "frequency_penalty", "seed",
                                        "reasoning_effort", "user")})


class ModelEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    space = StrictString(load_default=None)
    spaces = fields.List(StrictString(), load_default=None)                # a pool (CONTRACT §9)
    strategy = StrictString(load_default="failover", validate=validate.OneOf(STRATEGIES))
    api_name = StrictString(load_default=None, allow_none=True)
    flags = fields.Raw(load_default=None, allow_none=True)
    owned_by = StrictString(load_default=None, allow_none=True)
    description = StrictString(load_default=None, allow_none=True)
    tools = StrictString(load_default="ignore", validate=validate.OneOf(("emulate", "ignore")))

    @validates_schema
    def check(self, data: dict[str, Any], **kwargs: Any) -> None:
        spaces = data.get("spaces")
        if (data.get("space") is None) == (spaces is None):
            raise ValidationError("give exactly one of space and spaces", "space")
        if spaces is not None and not spaces:
            raise ValidationError("must name at least one Space", "spaces")
        if spaces is not None and len(set(spaces)) != len(spaces):
            raise ValidationError("names a Space twice", "spaces")
        for where, space in ([("space", data["space"])] if spaces is None else
                             [(f"spaces.{i}", s) for i, s in enumerate(spaces)]):
            hint = space_page_hint(space)
            if hint:
                raise ValidationError(hint, where)
            if not (SPACE_ID.match(space) or SPACE_URL.match(space)):
                raise ValidationError("must be a Space id 'owner/name' or an http(s):// URL", where)
        api_name = data.get("api_name")
        if api_name is not None and not re.match(r"^/?[\w.-]+$", api_name):
            raise ValidationError("must look like '/chat'", "api_name")
        flags = data.get("flags")
        if isinstance(flags, int) and not isinstance(flags, bool):
            # YAML reads flags: 41 as a number, and flags: 012 as the octal number 10.
            written = getattr(flags, "text", None) or f"{flags:02d}"
            if not FLAGS.match(written):
                raise ValidationError(f"must be two digits: the first 0-5, the second 0-2 (YAML read {written} "
                                      f"as the number {int(flags)}; write it in quotes: flags: \"41\")", "flags")
            flags = written
        if flags is not None and not (isinstance(flags, str) and FLAGS.match(flags)):
            raise ValidationError("must be two digits: the first 0-5, the second 0-2", "flags")

    @post_load
    def normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if isinstance(data.get("flags"), int):
            data["flags"] = getattr(data["flags"], "text", None) or f"{data['flags']:02d}"
        if data.get("api_name") and not data["api_name"].startswith("/"):
            data["api_name"] = "/" + data["api_name"]
        return data


class ModelsFileSchema(Schema):
    class Meta:
        unknown = RAISE

    models = fields.Dict(keys=StrictString(validate=validate.Regexp(
        MODEL_ID, error="model ids are letters, digits and . _ - : @ + /")),
        values=fields.Nested(ModelEntrySchema), required=True)


def first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested messages to (param path, message) of the first error."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return first_error(value, path)
        if isinstance(key, int):
            step = f"{path}[{key}]"
        else:
            step = f"{path}.{key}" if path else str(key)
        return first_error(value, step)
    if isinstance(messages, list) and messages:
        if all(isinstance(m, str) for m in messages):
            return path, messages[0]
        return first_error(messages[0], path)
    return path, str(messages)
