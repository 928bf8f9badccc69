"""Outputs -> content and reasoning: through the gateway from real apps, and the reader on its own."""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import pytest

from gateway.upstream.outputs import file_link, read_outputs, split_thinking

USER = [{"role": "user", "content": "2+2"}]


def message(client: Any, model: str) -> dict[str, Any]:
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": USER})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["choices"][0]["message"]


def stream(client: Any, model: str, **extra: Any) -> list[dict[str, Any]]:
    """The deltas of a streamed completion, in order."""
    resp = client.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": True, **extra})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    lines = [line[6:] for line in resp.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line)["choices"][0]["delta"] for line in lines[:-1]]


def joined(deltas: list[dict[str, Any]], key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas)


def test_a_reasoning_answer_pair_splits_into_reasoning_and_content(mapping_client):
    assert message(mapping_client, "reasoning-pair") == {
        "role": "assistant", "content": "It is 3 characters < 100.", "reasoning_content": "Let me think & count."}


def test_details_html_becomes_reasoning_and_entities_are_unescaped(mapping_client):
    assert message(mapping_client, "details") == {
        "role": "assistant", "content": "The answer to 2+2 is 4 < 5.", "reasoning_content": "Two & two"}


def test_thought_metadata_messages_become_reasoning(mapping_client):
    assert message(mapping_client, "thoughts") == {
        "role": "assistant", "content": "Answer: 2+2", "reasoning_content": "Hmm, easy."}


def test_file_outputs_become_links_in_the_text(mapping_client, mapping_apps_urls):
    text = message(mapping_client, "file")["content"]
    link, rest = text.split("\n\n")
    assert link.startswith("[mapping-answer.txt](" + mapping_apps_urls["file"]) and link.endswith(")")
    assert rest == "Here is 2+2."


def test_a_file_known_by_its_server_path_becomes_a_link_to_the_app(mapping_client, mapping_apps_urls):
    text = message(mapping_client, "attach")["content"]
    path = os.path.join(tempfile.gettempdir(), "mapping-answer.txt")
    assert text == f"Attached 2+2.\n[mapping-answer.txt]({mapping_apps_urls['attach']}gradio_api/file={path})"


def test_additional_outputs_of_a_chat_interface_are_not_part_of_the_answer(mapping_client):
    assert message(mapping_client, "extras") == {"role": "assistant", "content": "Answer to 2+2"}


def test_plain_answers_carry_no_reasoning_content(mapping_client):
    assert "reasoning_content" not in message(mapping_client, "respond")


@pytest.mark.parametrize("model", ["reasoning-pair", "details", "thoughts"])
def test_streamed_reasoning_arrives_as_reasoning_content_deltas(mapping_client, model):
    deltas = stream(mapping_client, model)
    whole = message(mapping_client, model)
    assert joined(deltas, "reasoning_content") == whole["reasoning_content"]
    assert joined(deltas, "content") == whole["content"]
    first_reasoning = next(i for i, d in enumerate(deltas) if d.get("reasoning_content"))
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert first_reasoning < first_content, "reasoning is sent as it arrives, before the answer"


def test_streamed_html_never_shows_tags_or_raw_entities(mapping_client):
    for delta in stream(mapping_client, "details"):
        for text in (delta.get("content") or "", delta.get("reasoning_content") or ""):
            assert "<details" not in text and "summary" not in text and "&amp;" not in text


def test_a_chatbot_output_answers_with_its_trailing_assistant_messages():
    history = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "there"}]}]
    assert read_outputs([history], ({"component": "Chatbot"},)) == ("Hello\nthere", "")


def test_a_pairs_chatbot_output_answers_with_the_last_bot_text():
    assert read_outputs([[["hi", "Hello"], ["more", "Bye &amp; thanks"]]]) == ("Bye & thanks", "")


def test_a_chatbot_output_wins_over_a_cleared_textbox():
    assert read_outputs(["", [{"role": "assistant", "content": "Yes"}]]) == ("Yes", "")
    assert read_outputs(["", [["hi", "Yes"]]], ({"component": "Textbox"}, {"component": "Chatbot"})) == ("Yes", "")


def test_a_multimodal_answer_lists_its_files_as_links():
    out = read_outputs([{"text": "See", "files": ["/tmp/a.png"]}, None], (), "http://h/gradio_api/file=")
    assert out == ("See\n[a.png](http://h/gradio_api/file=/tmp/a.png)", "")


@pytest.mark.parametrize("tag", ["think", "thinking"])
def test_think_tags_are_reasoning_too(tag):
    assert read_outputs([f"<{tag}>hmm</{tag}>Yes", None]) == ("Yes", "hmm")


def test_an_open_details_block_is_reasoning_in_progress():
    assert read_outputs(["<details><summary>Thinking</summary>so far"]) == ("", "so far")


# ---------------------------------------------------------------- issue 12: hostile outputs

def test_unclosed_reasoning_tags_cost_linear_time():
    """Finding 1: `<details<details…` without a `>` made the tag regex quadratic (96 KB: minutes)."""
    for flood in ("<details" * 50_000, "<summary" * 50_000, "<think>" * 50_000 + "<summary" * 50_000):
        started = time.process_time()
        content, reasoning = split_thinking(flood)
        assert time.process_time() - started < 0.5
        assert len(content) + len(reasoning) <= len(flood)


def test_a_long_run_of_assistant_messages_costs_linear_time():
    """The answer of a chat history is its trailing assistant run, found by one slice: it was
    built by insertion at the front, 200k messages after one user message took 9.4 s."""
    history = [{"role": "user", "content": "q"}] + [{"role": "assistant", "content": "a"}] * 200_000
    started = time.process_time()
    content, _ = read_outputs([history])
    assert time.process_time() - started < 2.0
    assert content == "\n".join(["a"] * 200_000)


@pytest.mark.parametrize("value, shown", [
    ({"url": "javascript:alert(1)", "orig_name": "click.png"}, "click.png"),
    ({"url": " JavaScript:alert(1)"}, "JavaScript:alert\\(1\\)"),
    ({"url": "data:text/html,<script>x</script>", "orig_name": "a.html"}, "a.html"),
    ({"url": "https://h/x.png", "orig_name": "x](javascript:alert(1))"},
     "[x\\]\\(javascript:alert\\(1\\)\\)](https://h/x.png)"),
    ({"url": "https://h/a b(1).png", "orig_name": "a b(1).png"}, "[a b\\(1\\).png](https://h/a%20b%281%29.png)"),
])
def test_file_outputs_link_only_http_urls_and_escape_markdown(value, shown):
    """Finding 17: file outputs became Markdown links unescaped, `javascript:` URLs included."""
    assert file_link(value) == shown


def test_a_partial_numeric_entity_is_not_unescaped_before_it_is_complete():
    assert split_thinking("a &#10")[0] == "a &#10"
    assert split_thinking("a &#104;&amp;")[0] == "a h&"
