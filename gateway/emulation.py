"""Tools and JSON output for apps that know neither: asked for in the system text, read back from the answer.

A Gradio chat app takes text and gives text. To give it tools, the gateway writes the tool
list and a strict reply format into the system text, turns earlier calls and results into
readable turns, and reads the app's answer: a well-formed call becomes `ToolCall`s, anything
else stays text. `response_format` works the same way: asked for in the system text, the
answer is checked with jsonschema, and a mismatch is an error (ResponseFormatMismatch).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Iterator

import jsonschema

from .errors import InvalidRequest, UpstreamError
from .registry import Model
from .schemas import ChatRequest, Message
from .tools import ResponseFormat, Tool, ToolCall, ToolChoice, arguments_text
from .upstream.deltas import Delta, word_chunks

CALL_FORMAT = '{"tool_calls": [{"name": "<tool name>", "arguments": {<the arguments as a JSON object>}}]}'
# Linear patterns only (CONTRACT §11): a lazy group from a fixed start, no \s* next to it.
FENCE = re.compile(r"^```[A-Za-z]*\n?(.*?)```$", re.S)
HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
# What an answer that is a call may start with: a JSON object, a code fence, a <tool_call> tag.
OPENERS = ("{", "```", "<tool_call>")


class ResponseFormatMismatch(UpstreamError):
    """The app's answer is not the JSON that response_format asked for."""

    code = "response_format_mismatch"


@dataclass(frozen=True)
class Emulation:
    """What one request asks of the app beyond plain chat, and how to read its answers."""

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = ToolChoice()
    response_format: ResponseFormat | None = None
    parallel: bool = True                # false (parallel_tool_calls): one call per answer at most

    @property
    def active(self) -> bool:
        return bool(self.tools) or self.response_format is not None

    def system_text(self) -> str:
        parts = []
        if self.tools:
            parts.append(tools_prompt(self.tools, self.choice, self.parallel))
        if self.response_format is not None:
            parts.append(format_prompt(self.response_format))
        return "\n\n".join(parts)

    def reader(self) -> "AnswerReader":
        return AnswerReader(self)


def for_request(model: Model, chat: ChatRequest) -> Emulation:
    """The emulation a request gets on this model: 400 when it insists on tools the model ignores."""
    choice = chat.tool_choice or ToolChoice("auto")
    tools: tuple[Tool, ...] = ()
    if chat.tools and choice.mode != "none":
        if getattr(model, "tools", "ignore") != "emulate":
            if choice.forced:
                raise InvalidRequest(f"The model '{model.id}' does not take tools (its models file entry has "
                                     "no 'tools: emulate'), so tool_choice cannot require one.",
                                     param="tool_choice", code="tools_not_supported")
        elif choice.mode == "function":
            tools = tuple(t for t in chat.tools if t.name == choice.name)
        else:
            tools = tuple(chat.tools)
    return Emulation(tools, choice, chat.response_format, chat.parallel_tool_calls)


def upstream_chat(chat: ChatRequest, emulation: Emulation) -> ChatRequest:
    """The chat the app gets: tool turns as readable text, the emulation's instructions as system text."""
    messages = chat.messages
    if any(m.tool_calls or m.role == "tool" for m in messages):      # one pass; most chats have none
        names = _call_names(messages)
        messages = [readable(m, names) for m in messages]
    extra = emulation.system_text()
    if extra:
        messages = [*messages, Message("system", extra)]   # joined after the client's own system text
    return chat if messages is chat.messages else replace(chat, messages=messages)


def _call_names(messages: list[Message]) -> dict[str, str]:
    return {call.id: call.name for m in messages for call in m.tool_calls if call.id}


def readable(message: Message, names: dict[str, str]) -> Message:
    """An assistant turn that called tools, in the reply format; a tool result naming its tool."""
    if message.role == "assistant" and message.tool_calls:
        calls = json.dumps({"tool_calls": [{"name": c.name, "arguments": _loads(c.arguments)}
                                           for c in message.tool_calls]}, ensure_ascii=False)
        text = f"{message.text}\n\n{calls}" if message.text else calls
        return Message("assistant", text)
    if message.role == "tool":
        name = names.get(message.tool_call_id or "")
        return Message("tool", f"{name} returned: {message.text}" if name else message.text)
    return message


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def tools_prompt(tools: tuple[Tool, ...], choice: ToolChoice, parallel: bool) -> str:
    lines = ["# Tools", "", "You can call these tools. Each is listed with what it does and the JSON Schema "
             "of its arguments:", ""]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description or '(no description)'}")
        lines.append("  arguments: " + json.dumps(tool.parameters or {"type": "object", "properties": {}},
                                                  ensure_ascii=False, separators=(",", ":")))
    lines += ["", "To call tools, reply with only this JSON and nothing else (no prose, no code fence):",
              CALL_FORMAT, ""]
    if choice.mode == "function":
        lines.append(f"You must call the tool {choice.name} now.")
    elif choice.mode == "required":
        lines.append("You must call at least one tool now." if parallel else "You must call one tool now.")
    else:
        lines.append("If no tool is needed, answer in plain text instead.")
    if not parallel:
        lines.append("Call at most one tool in a reply: the tool_calls list holds a single call.")
    lines.append('A tool\'s result comes back in a turn "Tool result: <tool name> returned: <result>"; '
                 "use it to answer.")
    return "\n".join(lines)


def format_prompt(fmt: ResponseFormat) -> str:
    text = "Reply with only one JSON object and nothing else: no prose, no code fence."
    if fmt.schema is not None:
        text += " It must match this JSON Schema:\n" + json.dumps(fmt.schema, ensure_ascii=False)
    return text


# ---------------------------------------------------------------- reading answers


def _unwrap(text: str) -> str:
    text = text.strip()
    fenced = FENCE.match(text)
    return fenced.group(1).strip() if fenced else text


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_calls(text: str, tools: tuple[Tool, ...]) -> list[ToolCall] | None:
    """The calls an answer makes, or None when it is not a well-formed call of a known tool.

    Taken: {"tool_calls": [{"name", "arguments"}]}, one {"name", "arguments"|"parameters"}
    object, or <tool_call>{…}</tool_call> blocks (the format many open models were tuned on).
    """
    body = _unwrap(text)
    if body.startswith("<tool_call>"):
        items: Any = [_json_value(block.strip()) for block in HERMES.findall(body)]
    else:
        value = _json_value(body)
        items = value.get("tool_calls") if isinstance(value, dict) and "tool_calls" in value else [value]
    if not isinstance(items, list) or not items:
        return None
    known = {t.name for t in tools}
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        spec = item.get("function") if isinstance(item.get("function"), dict) else item
        name, args = spec.get("name"), spec.get("arguments", spec.get("parameters", {}))
        if isinstance(args, str):
            args = _json_value(args)
        if name not in known or not isinstance(args, dict):
            return None
        calls.append(ToolCall(name, arguments_text(args)))
    return calls


class _OverBudget(Exception):
    pass


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """uniqueItems in linear time (jsonschema's own compares every pair)."""
    if unique and validator.is_type(instance, "array"):
        seen: set[str] = set()
        for item in instance:
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                yield jsonschema.ValidationError("the array has non-unique elements")
                return
            seen.add(key)


def bounded_validator(schema: dict[str, Any], budget: int) -> Any:
    """A validator for schema that gives up after `budget` keyword checks (CONTRACT §11).

    A caller's schema can make validation exponential (anyOf over recursive $refs) or
    backtrack for minutes (a `pattern`): patterns are not checked, uniqueItems is linear,
    and every other keyword check counts against the budget.
    """
    left = [budget]

    def counted(check: Any) -> Any:
        def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
            left[0] -= 1
            if left[0] < 0:
                raise _OverBudget
            return check(validator, value, instance, schema)
        return run

    base = jsonschema.Draft202012Validator
    checks = {name: counted(check) for name, check in base.VALIDATORS.items()}
    checks.update({"pattern": None, "patternProperties": None, "uniqueItems": counted(_unique_items)})
    return jsonschema.validators.extend(base, checks)(schema)


def check_json(text: str, fmt: ResponseFormat) -> str:
    """The answer's JSON text when it is what fmt asks for; else ResponseFormatMismatch."""
    body = _unwrap(text)
    value = _json_value(body)
    if value is None and body != "null":
        start, end = body.find("{"), body.rfind("}")
        value = _json_value(body[start:end + 1]) if 0 <= start < end else None
        body = body[start:end + 1]
    if not isinstance(value, dict) and fmt.schema is None:
        raise ResponseFormatMismatch("The model's answer is not a JSON object, as response_format asked.")
    if fmt.schema is not None:
        budget = 20 * (len(body) + len(json.dumps(fmt.schema))) + 10_000
        try:
            error = jsonschema.exceptions.best_match(bounded_validator(fmt.schema, budget).iter_errors(value))
        except RecursionError:
            raise ResponseFormatMismatch("The model's answer is nested too deeply to check.") from None
        except _OverBudget:
            raise ResponseFormatMismatch(f"The model's answer could not be checked against the schema "
                                         f"'{fmt.name}' within the gateway's bounds.") from None
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise ResponseFormatMismatch(f"The model's answer does not match the schema '{fmt.name}' "
                                         f"at {where}: {error.message[:300]}")
    return body


@dataclass(frozen=True)
class Calls:
    """The tool calls one answer made."""

    calls: tuple[ToolCall, ...]


class AnswerReader:
    """Reads one choice's deltas: text that cannot be a call passes at once, the rest is held.

    Reasoning always passes. With tools, content is held while it may still be a call (it
    starts like one of OPENERS); with a response_format, it is held to the end and checked.
    """

    def __init__(self, emulation: Emulation) -> None:
        self.emulation = emulation
        self._held: list[str] = []
        self._passing = not emulation.active

    def feed(self, delta: Delta) -> Iterator[Delta]:
        if self._passing or not delta.content:
            if delta:
                yield delta
            return
        if delta.reasoning:
            yield Delta(reasoning=delta.reasoning)
        self._held.append(delta.content)
        if self.emulation.response_format is None and not self._may_be_call("".join(self._held)):
            self._passing = True
            held, self._held = "".join(self._held), []
            yield Delta(held)

    @staticmethod
    def _may_be_call(text: str) -> bool:
        start = text.lstrip()
        return not start or any(start.startswith(o) or o.startswith(start) for o in OPENERS)

    def finish(self, reason: str) -> Iterator[Delta | Calls | str]:
        """What is still held, as text or calls; then the finish reason."""
        text, self._held = "".join(self._held), []
        if not self._passing and self.emulation.tools:
            calls = parse_calls(text, self.emulation.tools)
            if calls:
                # parallel_tool_calls false: a client that runs one call at a time gets one.
                yield Calls(tuple(calls if self.emulation.parallel else calls[:1]))
                yield "tool_calls"
                return
        if not self._passing and self.emulation.response_format is not None:
            text = check_json(text, self.emulation.response_format)
        for piece in word_chunks(text, 16):
            yield Delta(piece)
        yield reason
