"""Detection and conversations: real Gradio apps named in the models file by URL only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import create_app
from tests.fixtures_mapping import mapping_env


def ask(client: Any, model: str, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": messages, **extra})
    body = resp.get_json()
    assert resp.status_code == 200, body
    return body


def content(client: Any, model: str, messages: list[dict[str, Any]], **extra: Any) -> str:
    return ask(client, model, messages, **extra)["choices"][0]["message"]["content"]


def echoed(client: Any, model: str, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return json.loads(content(client, model, messages, **extra))


def client_for(tmp_path: Path, models: dict[str, Any]) -> Any:
    """A gateway whose models file holds just these entries."""
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return create_app({"TESTING": True}, env=mapping_env(path)).test_client()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


CONVERSATION = [{"role": "system", "content": "Be terse."}, user("What is 2+2?"),
                {"role": "assistant", "content": "4."}, user("And 3+3?")]


def test_chat_interface_endpoint_named_after_its_function_answers(mapping_client):
    assert content(mapping_client, "respond", [user("hello")]) == "You said: hello"


def test_single_user_turn_goes_as_the_plain_message(mapping_client):
    assert echoed(mapping_client, "chat", [user("hi there")])["message"] == "hi there"


def test_system_text_goes_into_the_system_message_input(mapping_client):
    seen = echoed(mapping_client, "chat", [{"role": "system", "content": "Be terse."}, user("hi")])
    assert (seen["message"], seen["system_message"]) == ("hi", "Be terse.")


def test_developer_messages_count_as_system_text(mapping_client):
    seen = echoed(mapping_client, "chat", [{"role": "developer", "content": "Dev rules."}, user("hi")])
    assert seen["system_message"] == "Dev rules."


def test_input_data_and_system_prompt_are_detected(mapping_client):
    seen = echoed(mapping_client, "input-data", [{"role": "system", "content": "S"}, user("question")])
    assert (seen["input_data"], seen["system_prompt"]) == ("question", "S")


def test_prompt_and_policy_are_detected(mapping_client):
    seen = echoed(mapping_client, "policy", [{"role": "system", "content": "No spam."}, user("buy now")])
    assert seen == {"prompt": "buy now", "policy": "No spam.", "max_new_tokens": 256}


def test_query_only_app_gets_the_system_text_ahead_of_the_message(mapping_client):
    seen = echoed(mapping_client, "query", [{"role": "system", "content": "Be terse."}, user("cats")])
    assert seen["query"] == "Be terse.\n\ncats"


def test_settings_are_clamped_to_the_sliders_and_cast_to_their_types(mapping_client):
    seen = echoed(mapping_client, "chat", [user("hi")], max_tokens=100000, temperature=0.0, top_p=0.01,
                  top_k=3, repetition_penalty=0.5)
    assert seen["max_new_tokens"] == 2048 and isinstance(seen["max_new_tokens"], int)
    assert (seen["temperature"], seen["top_p"], seen["top_k"], seen["repetition_penalty"]) == (0.1, 0.05, 3, 1.0)


def test_seed_and_reasoning_effort_reach_inputs_found_by_label(mapping_client):
    seen = echoed(mapping_client, "input-data", [user("hi")], seed=42, reasoning_effort="high")
    assert (seen["seed"], seen["effort"]) == (42, "High")


def test_a_reasoning_effort_the_dropdown_lacks_keeps_the_app_default(mapping_client):
    assert echoed(mapping_client, "input-data", [user("hi")], reasoning_effort="minimal")["effort"] == "Medium"


def test_max_completion_tokens_maps_to_the_length_input(mapping_client):
    assert echoed(mapping_client, "chat", [user("hi")], max_completion_tokens=77)["max_new_tokens"] == 77


def test_settings_not_sent_keep_the_app_defaults(mapping_client):
    seen = echoed(mapping_client, "chat", [user("hi")])
    assert (seen["max_new_tokens"], seen["temperature"], seen["system_message"]) == \
        (512, 0.7, "You are a helpful assistant.")


def test_earlier_turns_become_a_readable_transcript_without_a_history_input(mapping_client):
    seen = echoed(mapping_client, "chat", CONVERSATION)
    assert seen["message"] == "User: What is 2+2?\n\nAssistant: 4.\n\nUser: And 3+3?"
    assert (seen["system_message"], seen["turns"]) == ("Be terse.", 0)


def test_earlier_turns_go_into_a_chatbot_history_input_as_gradio_6_messages(mapping_client):
    seen = echoed(mapping_client, "history", CONVERSATION)
    assert seen["message"] == "Be terse.\n\nAnd 3+3?"
    assert [(m["role"], m["content"]) for m in seen["history"]] == [
        ("user", [{"type": "text", "text": "What is 2+2?"}]),
        ("assistant", [{"type": "text", "text": "4."}])]


def test_earlier_turns_go_into_a_pairs_history_input_as_pairs(mapping_client):
    seen = echoed(mapping_client, "pairs", CONVERSATION + [{"role": "assistant", "content": "6."},
                                                           user("Thanks")])
    assert seen["message"] == "Be terse.\n\nThanks"
    assert seen["chat_history"] == [["What is 2+2?", "4."], ["And 3+3?", "6."]]


def test_a_single_turn_sends_an_empty_history(mapping_client):
    assert echoed(mapping_client, "history", [user("hi")])["history"] == []


def test_tool_messages_and_null_content_travel_as_text(mapping_client):
    messages = [user("Weather in Paris?"),
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18 C, sunny"}]
    seen = echoed(mapping_client, "chat", messages)
    # The assistant's call and its result travel readably (emulation.py), so the app sees which
    # tool answered what.
    assert seen["message"] == ("User: Weather in Paris?\n\n"
                               'Assistant: {"tool_calls": [{"name": "weather", "arguments": {}}]}\n\n'
                               "Tool result: weather returned: 18 C, sunny")


def test_a_lone_tool_result_goes_as_the_message_marked_as_such(mapping_client):
    assert content(mapping_client, "respond", [{"role": "tool", "content": "42"}]) == "You said: Tool result: 42"


def test_a_trailing_assistant_turn_keeps_the_whole_conversation_in_the_message(mapping_client):
    seen = echoed(mapping_client, "chat", [user("Say hi"), {"role": "assistant", "content": "Hi"}])
    assert seen["message"] == "User: Say hi\n\nAssistant: Hi"


def test_text_parts_of_a_list_content_are_joined(mapping_client):
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    assert echoed(mapping_client, "chat", [{"role": "user", "content": parts}])["message"] == "first\nsecond"


def test_without_chat_endpoint_the_conventional_name_wins_among_message_endpoints(mapping_client):
    assert "prompt" in echoed(mapping_client, "policy", [user("x")])


def test_an_explicit_api_name_wins_over_detection(mapping_apps_urls, tmp_path):
    client = client_for(tmp_path, {"summary": {"space": mapping_apps_urls["policy"], "api_name": "summarize"}})
    assert echoed(client, "summary", [user("long text")]) == {"summarize": "long text"}


def test_an_api_name_the_app_lacks_is_an_upstream_error_naming_its_endpoints(mapping_apps_urls, tmp_path):
    client = client_for(tmp_path, {"m": {"space": mapping_apps_urls["policy"], "api_name": "/nope"}})
    resp = client.post("/v1/chat/completions", json={"model": "m", "messages": [user("x")]})
    assert resp.status_code == 502
    assert "/generate" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("model", ["look", "vision"])
def test_multimodal_chat_interface_gets_its_text_in_a_message_dict(mapping_client, model):
    seen = echoed(mapping_client, model, [user("describe")])
    assert (seen["text"], seen["file_sizes"]) == ("describe", [])
