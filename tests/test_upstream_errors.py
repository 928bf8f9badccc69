"""CONTRACT §4 errors: upstream failures classified by type, retried only where safe."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from gateway.errors import UpstreamError
from gateway.upstream.protocol import Gradio, UpstreamUnreachable, retry_after_from
from tests.fixtures_upstream import USER_TOKEN, chat, free_port

ZEROGPU = {"error": "You have exceeded your free ZeroGPU quota (60s requested vs. 10s left). "
                    "Try again in 0:01:00.", "title": "ZeroGPU quota exceeded", "duration": 10, "visible": True}


def post(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def sse_events(resp: Any) -> list[Any]:
    out = []
    for line in resp.get_data(as_text=True).splitlines():
        if line.startswith("data: "):
            out.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    return out


def test_gr_error_of_a_real_app_is_502_with_its_message(gateway: Any, apps: dict[str, str]) -> None:
    resp = post(gateway({"m": apps["failing"]}), chat())
    assert resp.status_code == 502
    error = resp.get_json()["error"]
    assert error["type"] == "upstream_error" and "the model ran out of ideas" in error["message"]


def test_gr_error_before_the_first_event_keeps_its_status_when_streaming(gateway: Any, apps: dict[str, str]) -> None:
    # A keep-alive long enough that a cold first call on a busy machine cannot release the headers.
    resp = post(gateway({"m": apps["failing"]}, SSE_KEEPALIVE="5"), chat(stream=True))
    assert resp.status_code == 502
    assert resp.mimetype == "application/json"


def test_zerogpu_title_is_429_with_retry_after_from_the_message(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(events=[("error", ZEROGPU)])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "60"
    assert resp.get_json()["error"]["code"] == "upstream_quota_exceeded"


def test_quota_words_in_an_ordinary_app_error_are_not_a_quota(gateway: Any, fake_gradio: Any) -> None:
    """Classified by the event's title, not by words in its message."""
    app = fake_gradio(events=[("error", {"error": "429 ZeroGPU quota exceeded, try again in 0:01:00",
                                         "title": "Error"})])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 502
    assert "Retry-After" not in resp.headers


def test_upstream_429_is_429_with_retry_after_from_the_header(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(call_replies=[(429, {"Retry-After": "17"}, {"detail": "Too Many Requests"})])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "17"
    assert len(app.calls()) == 1


@pytest.mark.parametrize("text, header, seconds", [
    ("Try again in 0:01:00.", None, 60), ("try again in 1:02:03", None, 3723), ("retry in 45 seconds", None, 45),
    ("Try again later", "12", 12), ("no hint", None, None)])
def test_retry_after_is_parsed_from_header_or_message(text: str, header: str | None, seconds: int | None) -> None:
    assert retry_after_from(text, header) == seconds


def test_connection_refused_is_503(gateway: Any) -> None:
    resp = post(gateway({"m": f"http://127.0.0.1:{free_port()}/"}), chat())
    assert resp.status_code == 503
    assert resp.get_json()["error"]["type"] == "upstream_unavailable"


def test_host_answering_502_is_retried_with_backoff_then_503(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(config_status=502)
    started = time.monotonic()
    resp = post(gateway({"m": app.url}), chat())
    took = time.monotonic() - started
    assert resp.status_code == 503
    assert took >= 0.35          # backoff 0.25 s then 0.5 s, each times a jitter of 0.5-1
    assert "Retry-After" in resp.headers
    assert sum(1 for s in app.seen if s.path == "/config") == 3      # the first try and two retries


def test_transient_503_before_the_app_accepted_is_retried(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(call_replies=[(503, {}, {"detail": "Service Unavailable"})])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "hello there"
    assert len(app.calls()) == 2 and len(app.accepted) == 1


def test_stream_broken_after_the_app_accepted_is_never_rerun(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(events=[("heartbeat", None), ("close", None)])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 502
    assert len(app.calls()) == 1


def test_error_after_text_reached_the_client_is_one_error_event_and_no_retry(
        gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(events=[("generating", ["partial answer"]), ("error", ZEROGPU)])
    resp = post(gateway({"m": app.url}), chat(stream=True), {"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 200
    events = sse_events(resp)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "upstream_quota_exceeded"
    assert any(e != "[DONE]" and e.get("choices") and e["choices"][0]["delta"].get("content") == "partial answer"
               for e in events)
    assert len(app.calls()) == 1          # no anonymous retry once text was sent


def test_queue_full_is_503(gateway: Any, upstream_apps: dict[str, str]) -> None:
    from tests.standins.apps import BLOCKED, RELEASE
    url = upstream_apps["blocking"]
    try:
        first = requests.post(url + "gradio_api/call/chat", json={"data": ["one"]}, timeout=5)
        assert BLOCKED.wait(10)                          # the only worker is busy
        second = requests.post(url + "gradio_api/call/chat", json={"data": ["two"]}, timeout=5)
        assert first.ok and second.ok                    # the queue of one is now full
        resp = post(gateway({"m": url}), chat())
        assert resp.status_code == 503
        assert resp.get_json()["error"]["code"] == "upstream_unavailable"
    finally:
        RELEASE.set()


def test_requests_failures_never_escape_the_protocol_boundary(apps: dict[str, str]) -> None:
    session = requests.Session()
    closed = Gradio(session, f"http://127.0.0.1:{free_port()}/", {}, connect_timeout=1, read_timeout=1)
    with pytest.raises(UpstreamUnreachable):
        closed.get_json("config", "config", prefixed=False)
    html = Gradio(session, apps["echo"], {}, connect_timeout=1, read_timeout=5)
    with pytest.raises(UpstreamError):
        html.get_json("", "page", prefixed=False)       # an HTML page is no JSON


def test_503_asking_for_a_long_pause_is_passed_on_not_retried(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(call_replies=[(503, {"Retry-After": "30"}, {"detail": "Space restarting"})])
    resp = post(gateway({"m": app.url}), chat())
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30"
    assert len(app.calls()) == 1


def test_retry_backoff_is_not_mistaken_for_an_idle_upstream(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(config_status=503)
    resp = post(gateway({"m": app.url}, UPSTREAM_IDLE_TIMEOUT="0.3"), chat())
    assert resp.status_code == 503, resp.get_json()
