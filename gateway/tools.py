"""Tools, tool choices, tool calls and response formats: the request fields of both APIs.

Chat Completions nests a function (`{"type": "function", "function": {"name", ...}}`), the
Responses API flattens it (`{"type": "function", "name", ...}`); both load into the same
dataclasses here, so the emulation (emulation.py) never asks which API a request came from.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from marshmallow import ValidationError, fields

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CHOICES = ("none", "auto", "required")


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class ToolChoice:
    mode: str = "auto"               # none | auto | required | function
    name: str | None = None          # the function a named choice asks for

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str                   # a JSON object, as text (what every client expects)
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))


@dataclass(frozen=True)
class ResponseFormat:
    type: str                        # json_object | json_schema
    name: str = "response"
    schema: dict[str, Any] | None = None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."       # never echo a huge value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be an object")
    return value


def _schema(value: Any, key: str) -> dict[str, Any] | None:
    """A JSON Schema given by the client, checked so that a broken one is a 400, not a 502 later."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError({key: ["must be a JSON Schema object"]})
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ValidationError({key: [f"is not a valid JSON Schema: {exc.message[:200]}"]}) from None
    except RecursionError:
        raise ValidationError({key: ["is nested too deeply"]}) from None
    return value


def load_tool(item: Any, flat: bool) -> Tool:
    """One function tool: nested in `function` for chat completions, flat for the Responses API."""
    item = _object(item, "a tool")
    if item.get("type") != "function":
        raise ValidationError({"type": [f"unsupported tool type {_shown(item.get('type'))}; "
                                        "only 'function' tools are supported"]})
    spec = item if flat else item.get("function")
    if not isinstance(spec, dict):
        raise ValidationError({"function": ["must be an object"]})
    name = spec.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ValidationError({"name": ["must be 1-64 letters, digits, '_', '.' or '-'"]})
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise ValidationError({"description": ["must be a string"]})
    return Tool(name, description or "", _schema(spec.get("parameters"), "parameters"))


class ToolsField(fields.Field):
    """`tools`: a list of function tools with unique names."""

    def __init__(self, flat: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flat = flat

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Tool]:
        if not isinstance(value, list):
            raise ValidationError("must be a list of tools")
        if len(value) > 128:
            raise ValidationError("must hold at most 128 tools")
        tools = []
        for i, item in enumerate(value):
            try:
                tools.append(load_tool(item, self.flat))
            except ValidationError as exc:
                raise ValidationError({i: exc.messages}) from None
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValidationError("tool names must be unique")
        return tools


class ToolChoiceField(fields.Field):
    """`tool_choice`: none | auto | required, or one named function (nested or flat)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> ToolChoice:
        if isinstance(value, str):
            if value not in CHOICES:
                raise ValidationError(f"must be one of {', '.join(CHOICES)} or a function")
            return ToolChoice(value)
        value = _object(value, "tool_choice")
        if value.get("type") != "function":
            raise ValidationError({"type": ["only 'function' tool choices are supported"]})
        spec = value.get("function") if isinstance(value.get("function"), dict) else value
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError({"name": ["must name a function"]})
        return ToolChoice("function", name)


def load_response_format(value: Any) -> ResponseFormat | None:
    """Chat's `response_format` and the Responses API's `text.format`: text means none."""
    value = _object(value, "the format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise ValidationError({"type": ["must be 'text', 'json_object' or 'json_schema'"]})
    spec = value.get("json_schema", value)        # chat nests it, the Responses API does not
    spec = _object(spec, "json_schema")
    name = spec.get("name") or "response"
    if not isinstance(name, str):
        raise ValidationError({"name": ["must be a string"]})
    schema = _schema(spec.get("schema"), "schema")
    return ResponseFormat("json_schema", name, schema)


class ResponseFormatField(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> ResponseFormat | None:
        return load_response_format(value)


def check_choice(tools: list[Tool], choice: ToolChoice | None) -> None:
    """A choice that forces a call needs a tool to call: "required" some tool, a named one that tool.

    OpenAI answers both with a 400; accepting them would hand back text the client did not ask for.
    """
    if choice is None:
        return
    if choice.mode == "required" and not tools:
        raise ValidationError({"tool_choice": ["is 'required', but tools lists no tool to call"]})
    if choice.mode == "function" and choice.name not in {t.name for t in tools}:
        raise ValidationError({"tool_choice": [f"names the function {_shown(choice.name)}, "
                                               "which is not in tools"]})


def arguments_text(value: Any) -> str:
    """Arguments as the JSON text clients expect, from an object or from text already."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
