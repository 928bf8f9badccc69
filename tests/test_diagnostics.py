"""Errors that say why (issue 13): the kind of a connection failure in the answer and the log line,
"not a Gradio app", a Space page URL, the Hub's look-up timeout, and waiting made visible."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Iterator

import pytest

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
