"""POST /v1/chat/completions through Flask's test client, against real Gradio apps."""
from __future__ import annotations

import json

USER = [{"role": "user", "content": "hello there"}]


def events(resp) -> list:
    """The SSE data payloads of a streamed response, [DONE] included."""
    out = []
    for block in resp.get_data(as_text=True).split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_non_stream_completion_has_openai_shape(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": USER})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "echo-app"
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("echo: hello there")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0


def test_system_message_and_max_tokens_reach_the_app(client):
    resp = client.post("/v1/chat/completions", json={
        "model": "echo-app", "max_tokens": 99,
        "messages": [{"role": "system", "content": "Be brief."}, *USER]})
    content = resp.get_json()["choices"][0]["message"]["content"]
    assert "[system=Be brief.]" in content and "[max=99]" in content


def test_max_tokens_is_clamped_to_the_app_range(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": USER,
                                                     "max_completion_tokens": 5000})
    assert "[max=512]" in resp.get_json()["choices"][0]["message"]["content"]


def test_stream_has_role_chunk_deltas_finish_and_done(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": USER, "stream": True})
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    chunks = events(resp)
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert body[-1]["choices"][0]["delta"] == {} and body[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({c["id"] for c in body}) == 1 and len({c["created"] for c in body}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "echo-app" for c in body)
    deltas = [c["choices"][0]["delta"]["content"] for c in body[1:-1]]
    assert len(deltas) > 2, "a streaming endpoint streams for real"
    assert "".join(deltas).startswith("echo: hello there")
    assert "usage" not in body[0]


def test_stream_include_usage_adds_a_usage_chunk(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": USER, "stream": True,
                                                     "stream_options": {"include_usage": True}})
    body = events(resp)[:-1]
    assert body[-1]["choices"] == [] and body[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in body[:-1])


def test_non_streaming_app_is_pseudo_streamed_in_word_chunks(client):
    stream = events(client.post("/v1/chat/completions", json={"model": "plain-app", "messages": USER,
                                                              "stream": True}))
    deltas = [c["choices"][0]["delta"].get("content") for c in stream[1:-2]]
    whole = client.post("/v1/chat/completions", json={"model": "plain-app", "messages": USER}).get_json()
    assert len(deltas) > 2
    assert "".join(deltas) == whole["choices"][0]["message"]["content"]


def test_app_error_is_502_with_its_message(client):
    resp = client.post("/v1/chat/completions", json={"model": "failing-app", "messages": USER})
    assert resp.status_code == 502
    err = resp.get_json()["error"]
    assert err["type"] == "upstream_error" and err["code"] == "upstream_error"
    assert "the model ran out of ideas" in err["message"]


def test_app_error_before_first_event_is_a_json_error_for_streams(client):
    resp = client.post("/v1/chat/completions", json={"model": "failing-app", "messages": USER, "stream": True})
    assert resp.status_code == 502
    assert resp.mimetype == "application/json"


def test_earlier_turns_reach_a_chat_interface_as_a_transcript(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "second"}]})
    content = resp.get_json()["choices"][0]["message"]["content"]
    assert "User: first" in content and "Assistant: reply" in content and "User: second" in content
    assert "[turns=0]" in content


def test_stop_sequence_cuts_the_output(client):
    resp = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": USER, "stop": ["there"]})
    choice = resp.get_json()["choices"][0]
    assert choice["message"]["content"] == "echo: hello "
    assert choice["finish_reason"] == "stop"
