"""Bad request bodies get 400 in OpenAI's error shape, naming the field."""
from __future__ import annotations

import json

import pytest

USER = [{"role": "user", "content": "hi"}]


def post(client, body, **kwargs):
    return client.post("/v1/chat/completions", json=body, **kwargs)


def assert_error(resp, status: int, param: str | None, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("body, param, code", [
    ({"messages": USER}, "model", "missing_field"),
    ({"model": "echo-app"}, "messages", "missing_field"),
    ({"model": "echo-app", "messages": []}, "messages", "invalid_value"),
    ({"model": 7, "messages": USER}, "model", "invalid_value"),
    ({"model": "echo-app", "messages": "hi"}, "messages", None),
    ({"model": "echo-app", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", None),
    ({"model": "echo-app", "messages": [{"content": "x"}]}, "messages[0].role", "missing_field"),
    ({"model": "echo-app", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", None),
    ({"model": "echo-app", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages[0].content[0].type", None),
    ({"model": "echo-app", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text", None),
    ({"model": "echo-app", "messages": USER, "temperature": 3}, "temperature", None),
    ({"model": "echo-app", "messages": USER, "temperature": "0.5"}, "temperature", None),
    ({"model": "echo-app", "messages": USER, "top_p": 1.5}, "top_p", None),
    ({"model": "echo-app", "messages": USER, "max_tokens": 0}, "max_tokens", None),
    ({"model": "echo-app", "messages": USER, "max_tokens": 1.5}, "max_tokens", None),
    ({"model": "echo-app", "messages": USER, "max_completion_tokens": -1}, "max_completion_tokens", None),
    ({"model": "echo-app", "messages": USER, "top_k": -1}, "top_k", None),
    ({"model": "echo-app", "messages": USER, "repetition_penalty": 0}, "repetition_penalty", None),
    ({"model": "echo-app", "messages": USER, "presence_penalty": 2.5}, "presence_penalty", None),
    ({"model": "echo-app", "messages": USER, "frequency_penalty": -3}, "frequency_penalty", None),
    ({"model": "echo-app", "messages": USER, "stop": 5}, "stop", None),
    ({"model": "echo-app", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop", None),
    ({"model": "echo-app", "messages": USER, "seed": "1"}, "seed", None),
    ({"model": "echo-app", "messages": USER, "n": 9}, "n", None),
    ({"model": "echo-app", "messages": USER, "stream": "yes"}, "stream", None),
    ({"model": "echo-app", "messages": USER, "stream_options": {"include_usage": 1}},
     "stream_options.include_usage", None),
    ({"model": "echo-app", "messages": USER, "reasoning_effort": "extreme"}, "reasoning_effort", None),
    ({"model": "echo-app", "messages": USER, "user": 12}, "user", None),
])
def test_bad_field_is_400_naming_it(client, body, param, code):
    err = assert_error(post(client, body), 400, param, code)
    assert err["type"] == "invalid_request_error"
    assert param.split("[")[0].split(".")[0] in err["message"]


def test_unknown_fields_are_ignored(client):
    resp = post(client, {"model": "echo-app", "messages": USER, "logit_bias": {"1": 2}, "tools": []})
    assert resp.status_code == 200


def test_null_optional_fields_are_accepted(client):
    resp = post(client, {"model": "echo-app", "messages": [{"role": "user", "content": "hi"},
                                                           {"role": "assistant", "content": None},
                                                           {"role": "user", "content": "again"}],
                         "temperature": None, "stop": None, "max_tokens": None, "n": 1})
    assert resp.status_code == 200


def test_body_must_be_json_content_type(client):
    resp = client.post("/v1/chat/completions", data=json.dumps({"model": "echo-app", "messages": USER}),
                       content_type="text/plain")
    assert_error(resp, 400, None)


@pytest.mark.parametrize("raw", [b"[1, 2]", b"\"text\"", b"{not json", b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000])
def test_body_must_be_a_json_object(client, raw):
    resp = client.post("/v1/chat/completions", data=raw, content_type="application/json")
    assert_error(resp, 400, None)


def test_body_over_ten_mib_is_413(client):
    big = b"{" + b" " * (10 * 1024 * 1024 + 10) + b"}"
    resp = client.post("/v1/chat/completions", data=big, content_type="application/json")
    assert_error(resp, 413, None, "request_too_large")


def test_unknown_model_in_chat_is_404(client):
    assert_error(post(client, {"model": "nope", "messages": USER}), 404, "model", "model_not_found")


def test_wrong_method_is_json_405(client):
    resp = client.get("/v1/chat/completions")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"
