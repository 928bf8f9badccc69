"""The official openai client against a live gunicorn (gevent workers) in front of the mapping apps."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Gunicorn
from tests.fixtures_mapping import mapping_env


@pytest.fixture(scope="module")
def openai_client(mapping_models_file: Path) -> Iterator["openai.OpenAI"]:  # noqa: F821
    import openai

    server = Gunicorn(mapping_env(mapping_models_file), workers=1)
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-not-a-hf-token", max_retries=0,
                               timeout=30)
        with client:     # closes its idle keep-alive connections, so gunicorn stops at once
            yield client
    finally:
        server.stop()


def test_openai_client_gets_a_mapped_answer_with_reasoning(openai_client):
    completion = openai_client.chat.completions.create(
        model="thoughts", messages=[{"role": "user", "content": "2+2"}])
    message = completion.choices[0].message
    assert (message.content, message.model_extra["reasoning_content"]) == ("Answer: 2+2", "Hmm, easy.")
    # The estimate: ceil(chars / 4), plus 4 a message on the prompt side; reasoning counts as completion.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1 + 4, 6)


def test_openai_client_maps_system_and_settings_onto_the_app(openai_client):
    completion = openai_client.chat.completions.create(
        model="chat", max_completion_tokens=99999, temperature=1.9,
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}])
    seen = json.loads(completion.choices[0].message.content)
    assert (seen["system_message"], seen["max_new_tokens"], seen["temperature"]) == ("Be terse.", 2048, 1.5)


def test_openai_client_streams_reasoning_then_content_and_stops_at_a_stop(openai_client):
    stream = openai_client.chat.completions.create(
        model="details", stream=True, stop=["4 <"], messages=[{"role": "user", "content": "2+2"}])
    reasoning, content, finish = "", "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (reasoning, content, finish) == ("Two & two", "The answer to 2+2 is ", "stop")
