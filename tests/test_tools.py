"""Tools, response_format and n on /v1/chat/completions: the openai SDK and LangChain against a live
gateway, every chunk checked against the SDK's own pydantic types."""
from __future__ import annotations

import json

import httpx
import openai
import pytest
import requests
from openai.types.chat import ChatCompletion, ChatCompletionChunk

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "weather in Paris?"}]


def raw_chunks(url: str, body: dict) -> list[dict]:
    with requests.post(url + "/chat/completions", json={**body, "stream": True}, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        lines = [line[6:] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def checked_json(response: httpx.Response) -> None:
    """Every completion the SDK receives whole is checked against its own type (chunks: raw_chunks)."""
    if response.status_code == 200 and response.headers["Content-Type"].startswith("application/json"):
        response.read()
        ChatCompletion.model_validate(response.json())


@pytest.fixture
def client(agent_base_url):
    http = httpx.Client(event_hooks={"response": [checked_json]})
    with openai.OpenAI(base_url=agent_base_url, api_key="sk-anything", max_retries=0, http_client=http) as client:
        yield client


def test_a_well_formed_call_becomes_tool_calls(client):
    raw = client.chat.completions.with_raw_response.create(model="agent", messages=ASK, tools=[WEATHER, TIME])
    done = ChatCompletion.model_validate(raw.http_response.json())
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(call.function.arguments, str) and json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_calls_stream_with_index_and_finish_reason(agent_base_url):
    body = {"model": "agent", "messages": [{"role": "user", "content": "both: weather in Paris?"}],
            "tools": [WEATHER, TIME]}
    chunks = raw_chunks(agent_base_url, body)
    calls = [c for chunk in chunks for c in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "get_weather"), (1, "get_time")]
    assert all(isinstance(c["function"]["arguments"], str) and c["type"] == "function" for c in calls)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


def test_parallel_tool_calls_false_gives_only_the_first_call_streamed_and_not(client, agent_base_url):
    both = [{"role": "user", "content": "both: weather in Paris?"}]     # the app answers with two calls
    done = client.chat.completions.create(model="agent", messages=both, tools=[WEATHER, TIME],
                                          parallel_tool_calls=False)
    assert [c.function.name for c in done.choices[0].message.tool_calls] == ["get_weather"]
    assert done.choices[0].finish_reason == "tool_calls"
    chunks = raw_chunks(agent_base_url, {"model": "agent", "messages": both, "tools": [WEATHER, TIME],
                                         "parallel_tool_calls": False})
    calls = [c for chunk in chunks for c in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "get_weather")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    with client.chat.completions.stream(model="agent", messages=both, tools=[WEATHER, TIME],
                                        parallel_tool_calls=False) as stream:
        final = stream.get_final_completion()
    assert [c.function.name for c in final.choices[0].message.tool_calls] == ["get_weather"]


@pytest.mark.parametrize("body, param", [
    ({"parallel_tool_calls": "false"}, "parallel_tool_calls"),
    ({"parallel_tool_calls": 0}, "parallel_tool_calls"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [], "tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
    ({"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
    ({"functions": [WEATHER["function"]]}, "functions"),                  # legacy: refused, not dropped
    ({"function_call": {"name": "get_weather"}}, "function_call"),
])
@pytest.mark.parametrize("model", ["agent", "agent-ignore"])
def test_what_the_gateway_cannot_do_is_a_400_naming_the_field(agent_client, model, body, param):
    resp = agent_client.post("/v1/chat/completions", json={"model": model, "messages": ASK, **body})
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_sdk_stream_helper_accumulates_the_calls(client):
    with client.chat.completions.stream(model="agent", messages=ASK, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_results_in_later_turns_reach_the_app(client):
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C and sunny"}]
    done = client.chat.completions.create(model="agent", messages=messages, tools=[WEATHER])
    assert done.choices[0].message.content == "The tool said: 21 C and sunny"
    assert done.choices[0].finish_reason == "stop"


def test_an_answer_that_is_no_call_is_text(client):
    done = client.chat.completions.create(model="agent", tools=[WEATHER],
                                          messages=[{"role": "user", "content": "no tool please"}])
    assert done.choices[0].message.content.startswith("echo: no tool please")
    assert done.choices[0].message.tool_calls is None and done.choices[0].finish_reason == "stop"


def test_tool_choice_none_and_named(client):
    plain = client.chat.completions.create(model="agent", messages=ASK, tools=[WEATHER], tool_choice="none")
    assert plain.choices[0].message.content.startswith("echo: weather in Paris?")
    named = client.chat.completions.create(model="agent", messages=ASK, tools=[WEATHER, TIME],
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named.choices[0].message.tool_calls[0].function.name == "get_time"


def test_ignore_drops_tools_and_refuses_a_forced_choice(client):
    plain = client.chat.completions.create(model="agent-ignore", messages=ASK, tools=[WEATHER])
    assert plain.choices[0].message.content == "echo: weather in Paris? [system=] [turns=0]"
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="agent-ignore", messages=ASK, tools=[WEATHER], tool_choice=choice)
        assert refused.value.code == "tools_not_supported"


def test_response_format_json_schema_and_json_object(client, agent_base_url):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
              "required": ["city", "temperature"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    done = client.chat.completions.create(model="agent", messages=[{"role": "user", "content": "city?"}],
                                          response_format=fmt)
    assert json.loads(done.choices[0].message.content) == {"city": "Paris", "temperature": 21}
    chunks = raw_chunks(agent_base_url, {"model": "agent", "messages": [{"role": "user", "content": "city?"}],
                                         "response_format": {"type": "json_object"}})
    assert json.loads("".join(c["choices"][0]["delta"].get("content", "") for c in chunks))["city"] == "Paris"
    with pytest.raises(openai.InternalServerError) as mismatch:
        client.chat.completions.create(model="agent", messages=[{"role": "user", "content": "wrong city?"}],
                                       response_format=fmt)
    assert mismatch.value.code == "response_format_mismatch" and "'city' is a required property" in \
        mismatch.value.message


def test_n_choices_are_independent_jobs_indexed_and_interleaved(client, agent_base_url):
    done = client.chat.completions.create(model="agent", messages=[{"role": "user", "content": "hi"}], n=3)
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert {c.message.content for c in done.choices} == {"echo: hi [system=] [turns=0]"}
    chunks = raw_chunks(agent_base_url, {"model": "agent", "messages": [{"role": "user", "content": "hi"}], "n": 3,
                                         "stream_options": {"include_usage": True}})
    order = [c["choices"][0]["index"] for c in chunks if c["choices"]]
    texts = {i: "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                        if c["choices"] and c["choices"][0]["index"] == i) for i in range(3)}
    assert texts == {i: "echo: hi [system=] [turns=0]" for i in range(3)}
    assert order[:3] == [0, 1, 2] and order != sorted(order)          # each starts at once, then interleaved
    finishes = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert sorted(finishes) == [0, 1, 2] and chunks[-1]["usage"]["completion_tokens"] > 0
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="agent", messages=[{"role": "user", "content": "hi"}], n=9)
    assert too_many.value.param == "n"


def test_langchain_bind_tools_invoke_and_stream(agent_base_url):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return "21 C"

    llm = ChatOpenAI(model="agent", base_url=agent_base_url, api_key="sk-anything", max_retries=0)
    bound = llm.bind_tools([get_weather])
    answer = bound.invoke("weather in Paris?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("get_weather", {"city": "Paris"})]
    streamed = None
    for chunk in bound.stream("weather in Paris?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [("get_weather", {"city": "Paris"})]
    result = get_weather.invoke(answer.tool_calls[0])          # a ToolMessage carrying the call's id
    final = bound.invoke(["weather in Paris?", answer, result])
    assert final.content == "The tool said: 21 C"


def test_langchain_bind_tools_without_parallel_calls(agent_base_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="agent", base_url=agent_base_url, api_key="sk-anything", max_retries=0)
    bound = llm.bind_tools([WEATHER, TIME], parallel_tool_calls=False)
    assert [c["name"] for c in bound.invoke("both: weather in Paris?").tool_calls] == ["get_weather"]
    streamed = None
    for chunk in bound.stream("both: weather in Paris?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert [c["name"] for c in streamed.tool_calls] == ["get_weather"]
