"""Issue 11: every Gradio generation that Spaces run, through a live gateway, with the openai SDK.

Real Gradio 3.50.2, 4.19.2, 4.20.1, 4.44.1, 5.50.0, 6.17.3 and 6.31.0 servers (one venv each,
tests/generations/venvs.py) serve the Space-style apps of tests/generations/space_apps.py; the
models file names each app by its URL only. Per version and app: non-stream, stream, multi-turn with
a system message and settings, the two-step Blocks chat, a text Interface, an image, the error
statuses, cancellation, and what `models probe` / `models check` say.

Select them with `-m generations`; one version with `-k 4.19.2`.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import ROOT
from tests.fixtures_generations import Generation, generations_env, model_id
from tests.fixtures_mapping import png_bytes
from tests.generations import venvs

pytestmark = [pytest.mark.generations, pytest.mark.timeout(900)]   # the first test starts every version

VERSIONS = list(venvs.ALL)
MULTIMODAL = [v for v in VERSIONS if tuple(map(int, v.split(".")[:2])) >= (4, 44)]   # multimodal ChatInterface
DEFAULT_SYSTEM = "You are a friendly Chatbot."   # the chat_settings app's default system message
CANCEL_WITHIN = 2.0

# app -> (user message, the exact answer to it as the only turn)
ANSWERS = {
    "chat_stream": ("hello there world", "echo: hello there world"),
    "two_step": ("hi from the user", "bot: hi from the user"),
    "text_iface": ("quiet words", "text: QUIET WORDS"),
}
STREAMING = ["chat_stream", "two_step"]          # generators: the gateway must really stream them


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def client(generations_gateway) -> openai.OpenAI:
    with openai.OpenAI(base_url=generations_gateway.url + "/v1", api_key="sk-anything", max_retries=0,
                       timeout=60) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def fields(answer: str) -> dict[str, str]:
    """The chat_settings app's answer, `sys=…|max=…|temp=…|turns=…|msg=…`, as a dict."""
    return dict(part.split("=", 1) for part in answer.split("|"))


def complete(client: openai.OpenAI, model: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    done = client.chat.completions.create(model=model, messages=messages, **kwargs)
    assert done.model == model and done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].finish_reason == "stop"
    return done.choices[0].message.content


def raw_stream(client: openai.OpenAI, model: str, messages: list[dict[str, Any]]) -> list[Any]:
    """Every `data:` payload of a streamed completion, as sent (JSON chunks, then the literal [DONE])."""
    with client.chat.completions.with_streaming_response.create(model=model, messages=messages,
                                                                stream=True) as resp:
        assert resp.http_response.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        payloads = [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


# ---- non-stream and stream ------------------------------------------------------------------------

@pytest.mark.parametrize("app", list(ANSWERS))
@pytest.mark.parametrize("version", VERSIONS)
def test_non_stream_answers(client, generations, version, app):
    message, expected = ANSWERS[app]
    assert complete(client, model_id(version, app), user(message)) == expected


@pytest.mark.parametrize("app", [*ANSWERS, "chat_settings"])
@pytest.mark.parametrize("version", VERSIONS)
def test_stream_deltas_join_to_the_answer(client, generations, version, app):
    model = model_id(version, app)
    message = ANSWERS[app][0] if app in ANSWERS else "stream me"
    whole = complete(client, model, user(message))
    payloads = raw_stream(client, model, user(message))
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert chunks and all(c.get("object") == "chat.completion.chunk" and "error" not in c for c in chunks), chunks
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(deltas) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}
    if app in STREAMING:     # real streaming: the generator's words arrive as several deltas
        assert len([d for d in deltas if d]) >= 3, deltas


@pytest.mark.parametrize("version", VERSIONS)
def test_openai_sdk_stream_iterates(client, generations, version):
    """The SDK's own iterator over a stream (it reads up to [DONE] and hides it)."""
    stream = client.chat.completions.create(model=model_id(version, "chat_stream"),
                                            messages=user("one two three"), stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


# ---- the mapping: system text, settings, history ---------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_single_turn_uses_the_app_defaults(client, generations, version):
    got = fields(complete(client, model_id(version, "chat_settings"), user("hello")))
    assert got["sys"] == DEFAULT_SYSTEM
    assert float(got["max"]) == 512 and float(got["temp"]) == pytest.approx(0.7)
    assert got["turns"] == "0" and got["msg"] == "hello"


@pytest.mark.parametrize("version", VERSIONS)
def test_multi_turn_with_system_message_and_settings(client, generations, version):
    messages = [{"role": "system", "content": "Answer like a pirate."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"}]
    got = fields(complete(client, model_id(version, "chat_settings"), messages, max_tokens=5000, temperature=1.5))
    assert got["sys"] == "Answer like a pirate."          # into the system input, not the message
    assert got["max"] == "2048"                           # clamped to the slider's 1..2048, an int (step 1)
    assert float(got["temp"]) == pytest.approx(1.5)
    # The earlier turns arrived: as the app's history (turns=1, the message alone), or, where the app's
    # history cannot be set from outside, as a readable transcript leading the message (CONTRACT §6).
    # A ChatInterface keeps its history in a server-side gr.State: a value sent at the State's position
    # is ignored (seen on 4.44.1, 5.50.0, 6.17.3 and 6.31.0: turns=0), so the transcript is what works.
    if got["turns"] == "1":
        assert got["msg"] == "second question"
    else:
        assert got["turns"] == "0", got
        msg = got["msg"]
        assert msg.index("first question") < msg.index("first answer") < msg.rindex("second question"), msg
        assert "pirate" not in msg                        # the system text went to its own input


@pytest.mark.parametrize("version", VERSIONS)
def test_temperature_is_clamped_to_the_app_range(client, generations, version):
    got = fields(complete(client, model_id(version, "chat_settings"), user("cold"), temperature=0.0,
                          max_tokens=1))
    assert float(got["temp"]) == pytest.approx(0.1)      # the slider's minimum
    assert got["max"] == "1"


@pytest.mark.parametrize("version", VERSIONS)
def test_requests_do_not_share_history(client, generations, version):
    """Each request its own session: a ChatInterface's server-side history never carries over."""
    model = model_id(version, "chat_settings")
    for _ in range(3):
        assert fields(complete(client, model, user("again")))["turns"] == "0"


# ---- the two-step Blocks chat -----------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_two_step_chat_answers_the_bot_reply(client, generations, version):
    answer = complete(client, model_id(version, "two_step"), user("what is two-step"))
    assert answer == "bot: what is two-step"              # the follower's reply, not the `user` step's ""


@pytest.mark.parametrize("version", VERSIONS)
def test_two_step_chat_multi_turn_answers_the_last_turn(client, generations, version):
    messages = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "bot: earlier"},
                {"role": "user", "content": "latest"}]
    assert complete(client, model_id(version, "two_step"), messages) == "bot: latest"


# ---- images -----------------------------------------------------------------------------------------

def image_message(text: str, png: bytes) -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.mark.parametrize("version", VERSIONS)
def test_image_reaches_a_multimodal_chat(client, generations, version):
    if version not in MULTIMODAL:
        pytest.skip(f"Gradio {version} has no multimodal ChatInterface")
    png = png_bytes()
    got = fields(complete(client, model_id(version, "multimodal"), image_message("what is this", png)))
    assert got == {"text": "what is this", "files": "1", "sizes": str(len(png))}


@pytest.mark.parametrize("version", VERSIONS)
def test_multimodal_chat_takes_text_alone(client, generations, version):
    if version not in MULTIMODAL:
        pytest.skip(f"Gradio {version} has no multimodal ChatInterface")
    got = fields(complete(client, model_id(version, "multimodal"), user("just text")))
    assert got == {"text": "just text", "files": "0", "sizes": ""}


@pytest.mark.parametrize("version", VERSIONS)
def test_image_to_a_text_only_chat_is_400(client, generations, version):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model_id(version, "chat_settings"),
                                       messages=image_message("what is this", png_bytes()))
    assert "text" in err.value.message.lower()


# ---- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("version", VERSIONS)
def test_app_error_is_502_with_its_message(client, generations, version, stream):
    with pytest.raises(openai.APIStatusError) as err:
        out = client.chat.completions.create(model=model_id(version, "raises"), messages=user("hi"), stream=stream)
        list(out) if stream else None
    assert err.value.status_code == 502, err.value
    body = err.value.body
    assert body["type"] == "upstream_error" and body["code"] == "upstream_error", body
    assert "The model is overloaded" in body["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("version", VERSIONS)
def test_zerogpu_quota_is_429_with_retry_after(client, generations, version, stream):
    with pytest.raises(openai.RateLimitError) as err:
        out = client.chat.completions.create(model=model_id(version, "zerogpu"), messages=user("hi"), stream=stream)
        list(out) if stream else None
    assert err.value.status_code == 429
    assert err.value.response.headers.get("retry-after") == "60"
    body = err.value.body
    assert body["type"] == "rate_limit_exceeded" and body["code"] == "upstream_quota_exceeded", body
    assert "GPU quota" in body["message"]


# ---- cancellation -----------------------------------------------------------------------------------

def steps_of(gen: Generation, token: str) -> list[tuple[str, float]]:
    path = gen.cancel_dir / f"{token}.log"
    if not path.exists():
        return []
    return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1]))
            for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("version", VERSIONS)
def test_closed_stream_stops_the_app_job(client, generations, version):
    """CONTRACT §7: the client leaves; within 2 s the app's generator makes no more steps."""
    gen = generations[version]
    token = uuid.uuid4().hex[:10]
    stream = client.chat.completions.create(model=model_id(version, "chat_stream"),
                                            messages=user(f"slow {token}"), stream=True)
    got = ""
    for chunk in stream:
        got += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if got.count("w") >= 3:
            break
    assert got.startswith("w0 w1"), got
    stream.close()
    left_at = time.time()
    time.sleep(CANCEL_WITHIN + 0.5)        # a job still running would have stepped (every 0.1 s) by then
    record = steps_of(gen, token)
    assert record and record[0][0] == "start"
    steps = [t for what, t in record if what.startswith("step")]
    assert not any(what == "finished" for what, _ in record), "the job ran to its end"
    late = max(steps) - left_at
    assert late < CANCEL_WITHIN, f"the app kept stepping {late:.1f} s after the client left ({len(steps)} steps)"


# ---- models probe / models check --------------------------------------------------------------------

def cli(models_file: Path, *args: str) -> Any:
    from gateway import create_app

    app = create_app({"TESTING": True}, env=generations_env(models_file))
    return app.test_cli_runner().invoke(args=["models", *args])


@pytest.mark.parametrize("app", ["chat_settings", "chat_stream", "two_step", "text_iface"])
@pytest.mark.parametrize("version", VERSIONS)
def test_models_probe_shows_the_gradio_version(generations, generations_models_file, version, app):
    result = cli(generations_models_file, "probe", generations[version].urls[app])
    assert result.exit_code == 0, result.output
    assert f"Gradio {version}" in result.output, result.output
    if app == "two_step":      # the chain: the follower answers
        assert "Chain:" in result.output and "whose output is the answer" in result.output, result.output


@pytest.mark.parametrize("version", VERSIONS)
def test_flask_models_probe_command(generations, version):
    """The command as operators type it: `flask --app wsgi models probe URL`."""
    env = {**os.environ, "BUILTIN_MODELS": "false", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("MODELS_FILE", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "models", "probe",
                          generations[version].urls["chat_settings"]], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Gradio {version}" in out.stdout, out.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_models_check_maps_every_app(generations, tmp_path, version):
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"models": {model_id(version, app): {"space": url}
                                           for app, url in generations[version].urls.items()}}))
    result = cli(path, "check")
    assert result.exit_code == 0, result.output
    for app in generations[version].urls:
        assert f"ok    {model_id(version, app)}:" in result.output, result.output
