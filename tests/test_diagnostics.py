"""Errors that say why (issue 13): the kind of a connection failure in the answer and the log line,
"not a Gradio app", a Space page URL, the Hub's look-up timeout, and waiting made visible."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest
import requests

from gateway.config import load_settings
from gateway.upstream.diagnose import NotAGradioApp, gradio_config
from gateway.upstream.protocol import Gradio
from gateway.upstream.session import make_session
from tests.fixtures_upstream import chat, free_port
from tests.standins.hub import Space
from tests.standins.server import QuietHandler, Served


def post(client: Any, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json=chat(**extra))


def failure(client: Any, caplog: pytest.LogCaptureFixture) -> tuple[int, str, list[str]]:
    with caplog.at_level(logging.WARNING, logger="gateway"):
        resp = post(client)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream failure")]
    return resp.status_code, resp.get_json()["error"]["message"], lines


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen backlog is full: a connection attempt waits until it times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    held = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        try:
            client.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(client)
    try:
        yield port
    finally:
        for client in held:
            client.close()
        server.close()


class Answers:
    """A web server that is not a Gradio app: /config answers what the test sets."""

    def __init__(self) -> None:
        self.status, self.content_type, self.body = 200, "text/html", b"<html>a web page</html>"
        answers = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.send_response(answers.status)
                self.send_header("Content-Type", answers.content_type)
                self.send_header("Content-Length", str(len(answers.body)))
                self.end_headers()
                self.wfile.write(answers.body)

        self.served = Served(Handler)
        self.url = self.served.url


@pytest.fixture
def web_page() -> Iterator[Answers]:
    answers = Answers()
    try:
        yield answers
    finally:
        answers.served.stop()


def test_refused_connection_says_connection_refused_in_the_answer_and_the_log(gateway, caplog):
    port = free_port()
    status, message, lines = failure(gateway({"m": f"http://127.0.0.1:{port}/"}), caplog)
    assert status == 503
    assert message == "The Gradio app is unreachable (config): connection refused by 127.0.0.1."
    assert lines and "connection refused by 127.0.0.1" in lines[0]


def test_a_host_that_does_not_resolve_says_name_resolution_failed(gateway, caplog):
    status, message, lines = failure(gateway({"m": "http://no-such-host.invalid/"}), caplog)
    assert status == 503 and "name resolution failed for no-such-host.invalid" in message
    assert any("name resolution failed for no-such-host.invalid" in line for line in lines)


def test_tls_to_a_plain_http_server_says_tls_failed(gateway, caplog, web_page):
    status, message, lines = failure(gateway({"m": f"https://127.0.0.1:{web_page.served.port}/"}), caplog)
    assert status == 503 and "TLS failed with 127.0.0.1" in message
    assert any("TLS failed" in line for line in lines)


def test_a_connection_that_never_completes_says_timed_out_connecting(gateway, caplog, full_backlog):
    status, message, lines = failure(gateway({"m": f"http://127.0.0.1:{full_backlog}/"},
                                             UPSTREAM_CONNECT_TIMEOUT="0.5"), caplog)
    assert status == 504 and "timed out connecting to 127.0.0.1" in message
    assert lines


@pytest.mark.parametrize("status, content_type, body, said", [
    (200, "text/html", b"<html>a web page</html>", "/config answered with an HTML page"),
    (404, "text/plain", b"not found", "/config answered HTTP 404"),
    (200, "application/json", b'{"status": "ok"}', "/config is JSON but not a Gradio configuration"),
    (200, "text/plain", b"hello", "/config is not JSON (text/plain)"),
])
def test_a_server_that_is_not_a_gradio_app_is_named_so(web_page, status, content_type, body, said):
    web_page.status, web_page.content_type, web_page.body = status, content_type, body
    gradio = Gradio(make_session(load_settings({})), web_page.url, {}, connect_timeout=2, read_timeout=2)
    with pytest.raises(NotAGradioApp) as err:
        gradio_config(gradio)
    assert err.value.message.startswith(f"{web_page.url} is not a Gradio app: {said}")
    assert err.value.status_code == 502


def test_a_real_gradio_apps_config_passes(apps):
    gradio = Gradio(make_session(load_settings({})), apps["echo"], {}, connect_timeout=2, read_timeout=5)
    assert {"components", "dependencies"} <= set(gradio_config(gradio))


def test_probe_of_a_web_page_says_it_is_not_a_gradio_app(make_mapping_app, web_page):
    result = make_mapping_app().test_cli_runner().invoke(args=["models", "probe", web_page.url])
    assert result.exit_code == 1
    assert f"{web_page.url} is not a Gradio app: /config answered with an HTML page" in result.output


def test_probe_of_a_space_page_url_names_the_space_id(make_mapping_app):
    result = make_mapping_app().test_cli_runner().invoke(
        args=["models", "probe", "https://huggingface.co/spaces/owner/name"])
    assert result.exit_code == 2 and "use the Space id 'owner/name'" in result.output


class SilentHub:
    """A Hub (or an app) that accepts a request and never answers it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        hub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hub.release.wait(30)

        self.served = Served(Handler)


def test_the_hub_lookup_timeout_is_hub_timeout_and_says_the_hub_did_not_answer(gateway, caplog):
    hub = SilentHub()
    try:
        client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.served.url, HUB_TIMEOUT="1")
        started = time.monotonic()
        status, message, lines = failure(client, caplog)
        took = time.monotonic() - started
    finally:
        hub.release.set()
        hub.served.stop()
    assert status == 504 and message == "The Hub did not answer within HUB_TIMEOUT (Hub lookup of team/echo)."
    assert lines == [f"upstream failure (Hub lookup of team/echo): {message}"]   # it said "the Gradio app", unlogged
    assert took < 5, took         # was a hard-coded 30 s (connect timeout + 20)


def test_a_hub_that_refuses_connections_is_named_as_the_hub(gateway, caplog):
    port = free_port()             # nothing listens there
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    status, message, lines = failure(client, caplog)
    assert status == 503, (status, message)
    assert message.startswith("The Hub is unreachable (Hub lookup of team/echo): connection refused"), message
    # one line per attempt (a refused connection is retried); it said "the Gradio app"
    assert lines and set(lines) == {f"upstream failure (Hub lookup of team/echo): {message}"}


def test_an_app_that_stops_answering_a_probe_is_logged_like_a_connection_failure(gateway, caplog):
    """(A request's own idle timer, UPSTREAM_IDLE_TIMEOUT, ends its wait first; a probe has none.)"""
    app = SilentHub()              # any GET waits: /config never answers
    try:
        cli = gateway({}, UPSTREAM_IDLE_TIMEOUT="1").application.test_cli_runner()
        with caplog.at_level(logging.WARNING, logger="gateway"):
            result = cli.invoke(args=["models", "probe", app.served.url])
    finally:
        app.release.set()
        app.served.stop()
    message = "The Gradio app stopped answering (config)."
    assert result.exit_code == 1 and message in result.output
    assert f"upstream failure (config): {message}" in [r.getMessage() for r in caplog.records]


def sse_chunks(resp: Any) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in resp.get_data(as_text=True).splitlines()
            if line.startswith("data: {")]


def test_a_waking_space_is_logged_counted_and_streamed_as_reasoning(gateway, hub, apps, caplog):
    from gateway import metrics

    hub.spaces["team/echo"] = Space(apps["echo"], stages=["SLEEPING"] * 4 + ["RUNNING"])
    before = metrics.UPSTREAM_WAITS.labels("space_waking")._value.get()
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url, STREAM_STATUS="reasoning", SSE_KEEPALIVE="0.3")
    with caplog.at_level(logging.INFO, logger="gateway"):
        resp = post(client, stream=True)
    assert resp.status_code == 200
    chunks = sse_chunks(resp)
    statuses = [c["choices"][0]["delta"].get("reasoning_content") for c in chunks if c.get("choices")]
    assert any(s and "The Space 'team/echo' is waking up (stage SLEEPING" in s for s in statuses)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting (space_waking)")]
    assert 1 <= len(waits) <= 2        # one line, not one per poll (the next after STATUS_LOG_EVERY)
    assert metrics.UPSTREAM_WAITS.labels("space_waking")._value.get() > before


def test_status_lines_never_reach_a_non_stream_answer_or_an_early_error(gateway, hub, apps):
    hub.spaces["team/echo"] = Space(apps["echo"], stages=["SLEEPING"] * 4 + ["RUNNING"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url, STREAM_STATUS="reasoning", SSE_KEEPALIVE="0.3")
    message = post(client).get_json()["choices"][0]["message"]
    assert "waking" not in json.dumps(message)
    hub.spaces["team/paused"] = Space(apps["echo"], stages=["SLEEPING", "PAUSED"])
    client = gateway({"p": "team/paused"}, HF_ENDPOINT=hub.url, STREAM_STATUS="reasoning", SSE_KEEPALIVE="5")
    resp = client.post("/v1/chat/completions", json=chat(model="p", stream=True))
    assert resp.status_code == 503          # an error before SSE_KEEPALIVE keeps its real status


# A real Gradio 4.19 app (its SSE queue sends `estimation` messages: rank, queue size, eta) that runs
# one job at a time, each for 3 s: a third request waits in its queue.
QUEUE_APP = """
import sys, time
import gradio as gr
from gradio import networking

def patient_url_ok(url):        # launch() gives its own server 3 s to answer, too little on a busy machine
    import httpx
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            return httpx.head(url, timeout=30, trust_env=False).status_code < 500
        except httpx.HTTPError:
            time.sleep(0.5)
    return False

networking.url_ok = patient_url_ok

def answer(message):
    time.sleep(3)
    return "echo: " + message

with gr.Blocks() as demo:
    box, out = gr.Textbox(), gr.Textbox()
    box.submit(answer, box, out, api_name="chat", concurrency_limit=1)
demo.queue()
_, url, _ = demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), prevent_thread_lock=True, quiet=True)
print("serving", url, flush=True)
demo.block_thread()
"""


@pytest.fixture
def one_at_a_time_app(tmp_path) -> Iterator[str]:
    """QUEUE_APP served by Gradio 4.19.2 (the SSE queue) from its cached venv: its URL."""
    from tests.conftest import stop_process
    from tests.generations import venvs

    python = venvs.ensure("4.19.2")
    port = free_port()
    log = tmp_path / "queue_app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(python), "-c", QUEUE_APP, str(port)], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **venvs.RUN_ENV, "PYTHONPATH": ""})
    try:
        end = time.monotonic() + 180
        while "serving" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()[-3000:]
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_process(proc)


def test_a_queued_job_is_logged_counted_and_streamed_as_reasoning(live_gateway, one_at_a_time_app):
    server = live_gateway({"q": one_at_a_time_app}, STREAM_STATUS="reasoning", SSE_KEEPALIVE="0.3",
                          UPSTREAM_IDLE_TIMEOUT="30", UPSTREAM_TOTAL_TIMEOUT="60")
    url = server.url + "/v1/chat/completions"
    warm = requests.post(url, json=chat("warm", model="q"), timeout=60)    # the app learns how long a job takes
    assert warm.json()["choices"][0]["message"]["content"] == "echo: warm", warm.text
    ahead = [threading.Thread(target=requests.post, args=(url,), kwargs={"json": chat(f"ahead {i}", model="q"),
                                                                          "timeout": 60}) for i in range(2)]
    for thread in ahead:           # one runs, one waits
        thread.start()
        time.sleep(0.5)
    resp = requests.post(url, json=chat("third", model="q", stream=True), timeout=60)
    for thread in ahead:
        thread.join(60)
    chunks = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert re.search(r"In the app's queue: position 1, about \d+ s\.\n", reasoning), reasoning
    assert "The app is working on it.\n" in reasoning
    assert "".join(d.get("content") or "" for d in deltas) == "echo: third"
    output = server.output()
    assert re.search(r"INFO .*waiting \(queue\): In the app's queue: position [12], about \d+ s\. "
                     r"\[position=[01] eta=[\d.]+ queue_size=\d\]", output), output
    assert "waiting (processing): The app is working on it." in output
    metrics = requests.get(server.url + "/metrics", timeout=10).text
    waits = re.search(r'^gateway_upstream_waits_total\{kind="queue"\} (\S+)$', metrics, re.M)
    assert waits and float(waits.group(1)) >= 1, metrics
