"""The OpenAI Agents SDK runs a tool-using agent through the gateway against a real Gradio app
(tests/agent_apps.py answers in the gateway's tool format), over the Responses API and over
chat completions, streamed and not."""
from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

agents = pytest.importorskip("agents")

CALLS: list[str] = []


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather of a city."""
    CALLS.append(city)
    return f"21 C and sunny in {city}"


@agents.function_tool
def get_time(city: str) -> str:
    """The time in a city."""
    CALLS.append("time in " + city)
    return "noon"


def weather_agent(base_url: str, api: str, tools: tuple[Any, ...] = (get_weather,), **kwargs: Any) -> agents.Agent:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-anything", max_retries=0)
    model_class = agents.OpenAIResponsesModel if api == "responses" else agents.OpenAIChatCompletionsModel
    return agents.Agent(name="weather", instructions="Answer questions about the weather.",
                        tools=list(tools), model=model_class(model="agent", openai_client=client), **kwargs)


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agent_calls_its_tool_and_answers_with_the_result(agent_base_url, api):
    CALLS.clear()
    result = agents.Runner.run_sync(weather_agent(agent_base_url, api), "What is the weather in Paris?",
                                    run_config=agents.RunConfig(tracing_disabled=True))
    assert CALLS == ["Paris"]
    assert result.final_output == "The tool said: 21 C and sunny in Paris"
    kinds = [item.type for item in result.new_items]
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_agent_without_parallel_tool_calls_runs_one_call(agent_base_url, api):
    CALLS.clear()                   # "both:" makes the app answer with a call of each tool
    agent = weather_agent(agent_base_url, api, (get_weather, get_time),
                          model_settings=agents.ModelSettings(parallel_tool_calls=False))
    result = agents.Runner.run_sync(agent, "both: weather in Paris?",
                                    run_config=agents.RunConfig(tracing_disabled=True))
    assert CALLS == ["Paris"] and result.final_output == "The tool said: 21 C and sunny in Paris"


def test_streamed_agent_run(agent_base_url):
    CALLS.clear()

    async def main() -> tuple[str, list[str]]:
        result = agents.Runner.run_streamed(weather_agent(agent_base_url, "responses"), "Weather in Paris?",
                                            run_config=agents.RunConfig(tracing_disabled=True))
        raw = [event.data.type async for event in result.stream_events() if event.type == "raw_response_event"]
        return result.final_output, raw

    final, raw = asyncio.run(main())
    assert CALLS == ["Paris"] and final == "The tool said: 21 C and sunny in Paris"
    assert raw.count("response.completed") == 2              # the call, then the answer
    assert "response.function_call_arguments.done" in raw and "response.output_text.delta" in raw
