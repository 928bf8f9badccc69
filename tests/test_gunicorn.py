"""The real deployment: gunicorn with gevent workers, and the official openai client."""
from __future__ import annotations

import subprocess
import sys
import threading

import openai
import pytest

from tests.conftest import ROOT, Gunicorn

USER = [{"role": "user", "content": "hello from the openai client"}]


@pytest.fixture
def oai(gunicorn) -> openai.OpenAI:
    return openai.OpenAI(base_url=gunicorn.url + "/v1", api_key="sk-not-a-token", max_retries=0, timeout=30)


def test_workers_are_gevent(gunicorn):
    assert "Using worker: gevent" in gunicorn.output()


def test_openai_client_lists_models(oai):
    ids = {m.id for m in oai.models.list()}
    assert {"gemma-2-9b", "echo-app"} <= ids


def test_openai_client_non_stream(oai):
    reply = oai.chat.completions.create(model="echo-app", messages=USER)
    assert reply.choices[0].message.content.startswith("echo: hello from the openai client")
    assert reply.model == "echo-app"
    assert reply.usage.total_tokens > 0


def test_streamed_reply_joins_to_the_non_streamed_text(oai):
    whole = oai.chat.completions.create(model="echo-app", messages=USER).choices[0].message.content
    chunks = list(oai.chat.completions.create(model="echo-app", messages=USER, stream=True))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 2
    assert "".join(deltas) == whole
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_upstream_error_raises_the_openai_error_class(oai):
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="failing-app", messages=USER, stream=True)
    assert info.value.status_code == 502
    assert "ran out of ideas" in info.value.message
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=USER)


def test_thirty_concurrent_users_of_a_stateful_app_never_share_history(oai):
    barrier = threading.Barrier(30)
    replies: dict[int, str] = {}
    errors: list[BaseException] = []

    def user(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            stream = i % 2 == 0
            msgs = [{"role": "user", "content": f"user-{i}"}]
            if stream:
                parts = oai.chat.completions.create(model="echo-app", messages=msgs, stream=True)
                replies[i] = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            else:
                replies[i] = oai.chat.completions.create(model="echo-app", messages=msgs).choices[0].message.content
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(replies) == 30
    for i, text in replies.items():
        assert text.startswith(f"echo: user-{i} "), text
        assert "[turns=0]" in text, f"user {i} saw someone else's history: {text}"


def test_served_without_configuration_lists_the_builtin_models(tmp_path):
    server = Gunicorn({}, workers=1)
    try:
        server.wait_ready()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        assert "gemma-3-270m" in {m.id for m in client.models.list()}
    finally:
        server.stop()


@pytest.mark.parametrize("content, expected", [
    ("models:\n  bad:\n    space: not a space\n", "models.bad.space"),
    ("models:\n  x:\n    space: a/b\n    flags: '73'\n", "models.x.flags"),
    ("models: [1, 2\n", "invalid YAML"),
    ("models:\n  x:\n    spaces: a/b\n", "models.x"),
])
def test_bad_models_file_stops_startup_with_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "models.yaml"
    path.write_text(content)
    server = Gunicorn({"MODELS_FILE": str(path)}, workers=1)
    try:
        code = server.proc.wait(30)
    finally:
        server.stop()
    assert code != 0
    lines = [l for l in server.output().splitlines() if "configuration error" in l]
    assert len(lines) == 1
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in server.output()


def test_bad_timeout_stops_startup_naming_the_variable(tmp_path):
    server = Gunicorn({"UPSTREAM_IDLE_TIMEOUT": "soon"}, workers=1)
    try:
        assert server.proc.wait(30) != 0
    finally:
        server.stop()
    assert "UPSTREAM_IDLE_TIMEOUT: must be a number" in server.output()


def test_missing_models_file_stops_the_flask_cli_too(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, capture_output=True, text=True,
                            env={"MODELS_FILE": str(tmp_path / "absent.yaml"), "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert result.returncode != 0
    assert "absent.yaml: cannot be read" in result.stderr
