"""The seed gateway's two-digit flags (CONTRACT §6), each against an app with its parameter names."""
from __future__ import annotations

import json
from typing import Any

import pytest

SYSTEM = {"role": "system", "content": "Rules."}
USER = {"role": "user", "content": "Hello"}
ALL_SETTINGS = {"max_tokens": 100, "temperature": 0.5, "top_p": 0.5, "top_k": 5, "repetition_penalty": 1.5}
DEFAULTS = {"max_new_tokens": 512, "temperature": 0.7, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.2}
SENT = {"max_new_tokens": 100, "temperature": 0.5, "top_p": 0.5, "top_k": 5, "repetition_penalty": 1.5}


def echoed(client: Any, model: str, **extra: Any) -> dict[str, Any]:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": [SYSTEM, USER], **extra})
    assert resp.status_code == 200, resp.get_json()
    return json.loads(resp.get_json()["choices"][0]["message"]["content"])


def settings_of(seen: dict[str, Any]) -> dict[str, Any]:
    return {k: seen[k] for k in DEFAULTS}


@pytest.mark.parametrize(("model", "expected"), [
    ("chat-00", DEFAULTS),
    ("chat-01", SENT),
    ("chat-02", {**DEFAULTS, "max_new_tokens": 100}),
])
def test_flag_0_sends_message_and_system_message_with_the_second_digits_settings(mapping_client, model,
                                                                                  expected):
    seen = echoed(mapping_client, model, **ALL_SETTINGS)
    assert (seen["message"], seen["system_message"]) == ("Hello", "Rules.")
    assert settings_of(seen) == expected


@pytest.mark.parametrize(("model", "expected"), [
    ("input-data-10", DEFAULTS),
    ("input-data-11", SENT),
    ("input-data-12", {**DEFAULTS, "max_new_tokens": 100}),
])
def test_flag_1_sends_input_data_and_system_prompt(mapping_client, model, expected):
    seen = echoed(mapping_client, model, **ALL_SETTINGS)
    assert (seen["input_data"], seen["system_prompt"]) == ("Hello", "Rules.")
    assert settings_of(seen) == expected


@pytest.mark.parametrize(("model", "tokens"), [("vision-20", 1024), ("vision-22", 100)])
def test_flag_2_sends_a_message_dict_and_system_prompt(mapping_client, model, tokens):
    seen = echoed(mapping_client, model, max_tokens=100)
    assert seen == {"text": "Hello", "file_sizes": [], "system_prompt": "Rules.", "max_new_tokens": tokens}


def test_flag_3_sends_a_message_dict_with_the_system_text_inside(mapping_client):
    assert echoed(mapping_client, "look-30") == {"text": "Rules.\n\nHello", "file_sizes": []}


def test_flag_4_sends_a_message_string_with_the_system_text_inside(mapping_client):
    resp = mapping_client.post("/v1/chat/completions", json={"model": "respond-40", "messages": [SYSTEM, USER]})
    assert resp.get_json()["choices"][0]["message"]["content"] == "You said: Rules.\n\nHello"


@pytest.mark.parametrize(("model", "tokens"), [("policy-50", 256), ("policy-52", 100)])
def test_flag_5_sends_prompt_and_policy(mapping_client, model, tokens):
    assert echoed(mapping_client, model, max_tokens=100) == {"prompt": "Hello", "policy": "Rules.",
                                                             "max_new_tokens": tokens}


def test_flags_win_over_detection(mapping_client):
    detected = echoed(mapping_client, "chat", max_tokens=9)
    assert (detected["system_message"], detected["max_new_tokens"]) == ("Rules.", 9)
    flagged = echoed(mapping_client, "chat-40", max_tokens=9)   # system inside the message, no settings
    assert (flagged["message"], flagged["system_message"], flagged["max_new_tokens"]) == \
        ("Rules.\n\nHello", "You are a helpful assistant.", 512)


def test_flags_naming_absent_parameters_fall_back_to_the_first_input(mapping_client):
    assert echoed(mapping_client, "query-00") == {"query": "Rules.\n\nHello"}
