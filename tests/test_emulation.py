"""gateway/emulation.py: the tool and JSON instructions, and reading the app's answers."""
from __future__ import annotations

import json

import pytest

from gateway.emulation import (AnswerReader, Calls, Emulation, ResponseFormatMismatch, check_json, for_request,
                               parse_calls, upstream_chat)
from gateway.errors import InvalidRequest
from gateway.registry import Model
from gateway.schemas import ChatRequest, Message
from gateway.tools import ResponseFormat, Tool, ToolCall, ToolChoice
from gateway.upstream.deltas import Delta

WEATHER = Tool("get_weather", "Weather of a city", {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = Tool("get_time")
EMULATE = Model("m", "http://127.0.0.1:1/", tools="emulate")
IGNORE = Model("m", "http://127.0.0.1:1/")


def chat(**kwargs) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", "weather?")], **kwargs)


@pytest.mark.parametrize("text", [
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
    '```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}\n```',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
])
def test_well_formed_calls_are_read_in_every_common_shape(text):
    calls = parse_calls(text, (WEATHER, TIME))
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and isinstance(calls[0].arguments, str)


@pytest.mark.parametrize("text", [
    "The weather is fine.", '{"tool_calls": [{"name": "launch_rockets", "arguments": {}}]}',
    '{"tool_calls": [{"name": "get_weather", "arguments": [1]}]}', '{"tool_calls": []}', '{"city": "Paris"}',
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}', "[1, 2]",
])
def test_anything_but_a_well_formed_call_of_a_known_tool_is_text(text):
    assert parse_calls(text, (WEATHER,)) is None


def test_reader_passes_plain_text_at_once_and_holds_what_may_be_a_call():
    emulation = Emulation((WEATHER,))
    reader = AnswerReader(emulation)
    assert list(reader.feed(Delta("  "))) == []
    assert list(reader.feed(Delta("Sunny", reasoning="hmm"))) == [Delta(reasoning="hmm"), Delta("  Sunny")]
    assert list(reader.feed(Delta(" today"))) == [Delta(" today")]
    assert list(reader.finish("stop")) == ["stop"]
    reader = AnswerReader(emulation)
    held = [out for piece in ('{"tool_', 'calls": [{"name": "get_weather", ', '"arguments": {}}]}')
            for out in reader.feed(Delta(piece))]
    assert held == []
    calls, reason = list(reader.finish("stop"))
    assert isinstance(calls, Calls) and calls.calls[0].name == "get_weather" and reason == "tool_calls"


def test_reader_returns_a_held_answer_that_is_no_call_as_text():
    reader = AnswerReader(Emulation((WEATHER,)))
    assert list(reader.feed(Delta("{not json"))) == []
    assert list(reader.finish("stop")) == [Delta("{not json"), "stop"]


def test_json_is_unwrapped_and_checked_against_the_schema():
    fmt = ResponseFormat("json_schema", "city", {"type": "object", "required": ["city"],
                                                 "properties": {"city": {"type": "string", "pattern": "^(a+)+$"}}})
    assert check_json('```json\n{"city": "Paris"}\n```', fmt) == '{"city": "Paris"}'
    assert check_json('Here it is: {"city": "Paris"} Enjoy.', fmt) == '{"city": "Paris"}'
    with pytest.raises(ResponseFormatMismatch, match="'city' is a required property"):
        check_json('{"town": "Paris"}', fmt)
    with pytest.raises(ResponseFormatMismatch, match="not a JSON object"):
        check_json("Paris", ResponseFormat("json_object"))
    assert ResponseFormatMismatch.status_code == 502 and ResponseFormatMismatch.code == "response_format_mismatch"


def test_a_callers_pattern_cannot_make_the_check_backtrack():
    # (a+)+$ against 40 a's and a b would take hours in re; patterns are not checked (CONTRACT §11).
    fmt = ResponseFormat("json_schema", "s", {"type": "object", "properties": {"s": {"pattern": "^(a+)+$"}}})
    assert check_json(json.dumps({"s": "a" * 40 + "b"}), fmt)


def test_ignore_drops_tools_but_refuses_a_forced_choice():
    assert not for_request(IGNORE, chat(tools=[WEATHER])).active
    for choice in (ToolChoice("required"), ToolChoice("function", "get_weather")):
        with pytest.raises(InvalidRequest) as refused:
            for_request(IGNORE, chat(tools=[WEATHER], tool_choice=choice))
        assert refused.value.code == "tools_not_supported" and refused.value.param == "tool_choice"


def test_emulate_lists_the_tools_and_the_reply_format_in_the_system_text():
    emulation = for_request(EMULATE, chat(tools=[WEATHER, TIME], tool_choice=ToolChoice("function", "get_time")))
    assert emulation.tools == (TIME,)
    sent = upstream_chat(chat(tools=[WEATHER, TIME]), emulation)
    system = sent.messages[-1]
    assert system.role == "system" and "- get_time:" in system.text and "get_weather" not in system.text
    assert '{"tool_calls": [{"name": "<tool name>"' in system.text and "You must call the tool get_time" in system.text
    assert not for_request(EMULATE, chat(tools=[WEATHER], tool_choice=ToolChoice("none"))).active


def test_earlier_calls_and_results_reach_the_app_as_readable_turns():
    messages = [Message("user", "weather?"),
                Message("assistant", None, (ToolCall("get_weather", '{"city": "Paris"}', "call_1"),)),
                Message("tool", "21 C and sunny", tool_call_id="call_1")]
    sent = upstream_chat(ChatRequest(model="m", messages=messages), Emulation())
    assert sent.messages[1] == Message("assistant", '{"tool_calls": [{"name": "get_weather", '
                                                    '"arguments": {"city": "Paris"}}]}')
    assert sent.messages[2] == Message("tool", "get_weather returned: 21 C and sunny")


def test_a_schema_that_would_take_exponential_time_is_cut_off():
    # Every level doubles the work: anyOf of two branches that both recurse into the items.
    schema = {"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}},
                        {"type": "string"}]}
    deep = "[" * 40 + "2" + "]" * 40
    with pytest.raises(ResponseFormatMismatch, match="within the gateway's bounds"):
        check_json(deep, ResponseFormat("json_schema", "deep", schema))


def test_unique_items_and_linear_unwrapping_of_long_answers():
    fmt = ResponseFormat("json_schema", "u", {"type": "object", "properties": {"v": {"uniqueItems": True}}})
    assert check_json(json.dumps({"v": list(range(50_000))}), fmt)
    with pytest.raises(ResponseFormatMismatch, match="non-unique"):
        check_json(json.dumps({"v": [1, 2, 1]}), fmt)
    # Long runs of whitespace after an opener cost linear time, not quadratic.
    assert parse_calls("```" + " " * 200_000, (WEATHER,)) is None
    assert parse_calls("<tool_call>" + " " * 200_000, (WEATHER,)) is None


def test_parallel_tool_calls_false_asks_for_one_call_and_keeps_only_the_first():
    both = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time"}]}'
    single = for_request(EMULATE, chat(tools=[WEATHER, TIME], parallel_tool_calls=False))
    assert "Call at most one tool in a reply" in single.system_text()
    assert "at most one tool" not in for_request(EMULATE, chat(tools=[WEATHER, TIME])).system_text()
    forced = for_request(EMULATE, chat(tools=[WEATHER], tool_choice=ToolChoice("required"), parallel_tool_calls=False))
    assert "You must call one tool now." in forced.system_text()
    reader = single.reader()
    assert list(reader.feed(Delta(both))) == []
    calls, reason = list(reader.finish("stop"))
    assert [c.name for c in calls.calls] == ["get_weather"] and reason == "tool_calls"
    parallel = AnswerReader(Emulation((WEATHER, TIME)))
    list(parallel.feed(Delta(both)))
    calls, _ = list(parallel.finish("stop"))
    assert [c.name for c in calls.calls] == ["get_weather", "get_time"]
