"""POST /v1/responses (CONTRACT §9): the openai SDK against a live gateway, every event checked
against the SDK's own pydantic types; validation and errors through Flask's test client."""
from __future__ import annotations

import json

import httpx
import openai
import pytest
import requests
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.done",
               "response.content_part.done", "response.output_item.done", "response.completed"]


def sse_events(url: str, body: dict) -> list[dict]:
    """The raw stream, each `event:` line checked against its data's type."""
    with requests.post(url + "/responses", json=body, stream=True, timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        events, name = [], None
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["type"] == name
                events.append(event)
    for event in events:
        EVENT.validate_python(event)                 # the SDK's own types, strictly
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def checked_json(response: httpx.Response) -> None:
    """Every response the SDK receives whole is checked against its own type (streams: sse_events)."""
    if response.status_code == 200 and response.headers["Content-Type"].startswith("application/json"):
        response.read()
        Response.model_validate(response.json())


@pytest.fixture
def client(agent_base_url):
    http = httpx.Client(event_hooks={"response": [checked_json]})
    with openai.OpenAI(base_url=agent_base_url, api_key="sk-anything", max_retries=0, http_client=http) as client:
        yield client


def dedupe(types: list[str]) -> list[str]:
    return [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t]


def test_sdk_responses_create_returns_a_message_and_usage(client):
    done = client.responses.create(model="agent", input="hello there", instructions="Be brief.",
                                   max_output_tokens=50)
    assert done.status == "completed" and done.model == "agent" and done.id.startswith("resp_")
    assert done.output_text.startswith("echo: hello there [system=Be brief.]")
    assert [item.type for item in done.output] == ["message"]
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens


def test_stream_sends_the_documented_events_with_the_whole_output_at_the_end(agent_base_url):
    events = sse_events(agent_base_url, {"model": "agent", "input": "hello there", "stream": True})
    assert dedupe([e["type"] for e in events]) == TEXT_EVENTS
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.startswith("echo: hello there")
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] > 0
    assert completed["output"] == [events[-2]["item"]]
    assert completed["output"][0]["content"][0]["text"] == text


def test_sdk_stream_parses_every_event(client):
    events = list(client.responses.create(model="agent", input="hello there", stream=True))
    with client.responses.stream(model="agent", input="hello there") as stream:
        final = stream.get_final_response()
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text.startswith("echo: hello there")
    assert final.output_text == events[-1].response.output_text


def test_reasoning_is_a_reasoning_item_before_the_message(client, agent_base_url):
    done = client.responses.create(model="agent", input="think: what is 6 times 7?")
    assert [item.type for item in done.output] == ["reasoning", "message"]
    assert done.output[0].content[0].text == "The user wants 6 times 7."
    assert done.output_text == "The answer is 42."
    events = sse_events(agent_base_url, {"model": "agent", "input": "think: 6 times 7?", "stream": True})
    types = dedupe([e["type"] for e in events])
    assert types[2:7] == ["response.output_item.added", "response.content_part.added",
                          "response.reasoning_text.delta", "response.reasoning_text.done",
                          "response.content_part.done"]
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["reasoning", "message"]


def test_function_tools_give_function_call_items_streamed_and_not(client, agent_base_url):
    done = client.responses.create(model="agent", input="weather in Paris?", tools=[WEATHER])
    (call,) = done.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    assert call.call_id.startswith("call_")
    events = sse_events(agent_base_url, {"model": "agent", "input": "weather in Paris?", "tools": [WEATHER],
                                         "stream": True, "tool_choice": "required"})
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert json.loads(events[4]["arguments"]) == {"city": "Paris"} and events[4]["name"] == "get_weather"
    assert events[-1]["response"]["output"] == [events[5]["item"]]


def test_parallel_tool_calls_false_gives_only_the_first_call_streamed_and_not(client, agent_base_url):
    both = {"model": "agent", "input": "both: weather in Paris?", "tools": [WEATHER, TIME]}
    done = client.responses.create(**both, parallel_tool_calls=False)        # the app answers with two calls
    assert [(item.type, item.name) for item in done.output] == [("function_call", "get_weather")]
    assert done.parallel_tool_calls is False
    events = sse_events(agent_base_url, {**both, "parallel_tool_calls": False, "stream": True})
    added = [e["item"]["name"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["get_weather"] and events[-1]["response"]["parallel_tool_calls"] is False
    assert [item["name"] for item in events[-1]["response"]["output"]] == ["get_weather"]
    assert len(client.responses.create(**both).output) == 2


def test_function_call_output_items_reach_the_app_readably(client):
    items = [{"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather",
              "arguments": '{"city": "Paris"}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "21 C and sunny"}]
    done = client.responses.create(model="agent", input=items, tools=[WEATHER])
    assert done.output_text == "The tool said: 21 C and sunny"


def test_an_error_after_the_first_event_is_response_failed(agent_base_url):
    events = sse_events(agent_base_url, {"model": "agent", "input": "explode", "stream": True})
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "exploded mid-answer" in failed["error"]["message"]


def test_an_error_before_the_first_event_keeps_its_status(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="no-such-model", input="hi", stream=True)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as unreachable:
        client.responses.create(model="agent-missing", input="hi", stream=True)
    assert unreachable.value.status_code in (502, 503, 504)


@pytest.mark.parametrize("body, param", [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": []}, "input"),
    ({"input": [{"type": "web_search_call"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [], "tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "name": "get_weather"}}, "tool_choice"),
    ({"parallel_tool_calls": "false"}, "parallel_tool_calls"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}}, "text.format.schema"),
])
@pytest.mark.parametrize("model", ["agent", "agent-ignore"])
def test_what_the_gateway_cannot_do_is_a_400_naming_the_field(agent_client, model, body, param):
    resp = agent_client.post("/v1/responses", json={"model": model, "input": "hi", **body})
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_store_false_and_unknown_fields_are_accepted(agent_client):
    resp = agent_client.post("/v1/responses", json={"model": "agent", "input": "hi", "store": False,
                                                    "include": ["reasoning.encrypted_content"],
                                                    "truncation": "auto", "previous_response_id": None})
    assert resp.status_code == 200 and resp.get_json()["store"] is False


def test_tools_on_a_model_that_ignores_them(agent_client):
    body = {"model": "agent-ignore", "input": "weather in Paris?", "tools": [WEATHER]}
    answer = agent_client.post("/v1/responses", json=body).get_json()
    assert answer["output"][0]["type"] == "message"
    refused = agent_client.post("/v1/responses", json={**body, "tool_choice": "required"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "tools_not_supported"


def test_json_schema_text_format_is_checked(agent_client):
    fmt = {"type": "json_schema", "name": "city", "strict": True,
           "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    done = agent_client.post("/v1/responses", json={"model": "agent", "input": "city?", "text": {"format": fmt}})
    assert json.loads(done.get_json()["output"][0]["content"][0]["text"])["city"] == "Paris"
    assert done.get_json()["text"]["format"]["name"] == "city"
    wrong = agent_client.post("/v1/responses", json={"model": "agent", "input": "wrong city?",
                                                     "text": {"format": fmt}})
    assert wrong.status_code == 502 and wrong.get_json()["error"]["code"] == "response_format_mismatch"


def test_gateway_keys_and_request_ids_hold_for_responses(agent_models_file):
    from gateway import create_app
    from tests.conftest import gateway_env

    app = create_app({"TESTING": True}, env=gateway_env(agent_models_file, GATEWAY_API_KEYS="sk-right"))
    client = app.test_client()
    refused = client.post("/v1/responses", json={"model": "agent", "input": "hi"},
                          headers={"Authorization": "Bearer sk-wrong", "X-Request-Id": "abc-123"})
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "invalid_api_key"
    assert refused.headers["X-Request-Id"] == "abc-123"
    done = client.post("/v1/responses", json={"model": "agent", "input": "hi"},
                       headers={"Authorization": "Bearer sk-right"})
    assert done.status_code == 200 and done.get_json()["output"][0]["content"][0]["text"].startswith("echo: hi")
