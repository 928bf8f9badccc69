"""CONTRACT §3/§4: connect, idle and total timeouts, in streams and not; SSE keep-alives."""
from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from tests.fixtures_upstream import chat
from tests.standins.apps import CRAWL


def timed(client: Any, body: dict[str, Any]) -> tuple[Any, float]:
    started = time.monotonic()
    resp = client.post("/v1/chat/completions", json=body)
    return resp, time.monotonic() - started


@pytest.fixture
def unanswering_host() -> Iterator[str]:
    """A listener whose backlog is full: new connections are never accepted (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):                      # fill the accept queue until a connect hangs
        s = socket.socket()
        s.settimeout(0.2)
        fillers.append(s)
        try:
            s.connect(("127.0.0.1", port))
        except (socket.timeout, OSError):
            break
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_connect_timeout_is_504(gateway: Any, unanswering_host: str) -> None:
    client = gateway({"m": unanswering_host}, UPSTREAM_CONNECT_TIMEOUT="0.5", UPSTREAM_IDLE_TIMEOUT="10")
    resp, took = timed(client, chat())
    assert resp.status_code == 504
    assert resp.get_json()["error"]["code"] == "upstream_timeout"
    assert took < 3


def test_silent_app_is_abandoned_after_the_idle_timeout(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(events=[("hang", 10)])
    resp, took = timed(gateway({"m": app.url}, UPSTREAM_IDLE_TIMEOUT="1"), chat())
    assert resp.status_code == 504
    assert "UPSTREAM_IDLE_TIMEOUT" in resp.get_json()["error"]["message"]
    assert 0.9 < took < 3


def test_heartbeats_keep_a_quiet_job_alive(gateway: Any, fake_gradio: Any) -> None:
    """Idle means no event at all: Gradio's heartbeats count."""
    beats = [("pause", 0.6), ("heartbeat", None)] * 3
    app = fake_gradio(events=[*beats, ("complete", ["worth the wait"])])
    resp, took = timed(gateway({"m": app.url}, UPSTREAM_IDLE_TIMEOUT="1"), chat())
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "worth the wait"
    assert took > 1.5                                   # longer than the idle timeout


def test_events_count_as_they_arrive_when_the_stream_is_not_chunked(gateway: Any, fake_gradio: Any) -> None:
    """Behind an HTTP/1.0 proxy the event stream has no chunks: events must still arrive one by one."""
    beats = [("pause", 0.6), ("heartbeat", None)] * 3
    app = fake_gradio(events=[*beats, ("complete", ["worth the wait"])], chunked=False)
    resp, _ = timed(gateway({"m": app.url}, UPSTREAM_IDLE_TIMEOUT="1"), chat())
    assert resp.status_code == 200, resp.get_json()


def test_total_timeout_bounds_a_job_that_keeps_talking(gateway: Any, upstream_apps: dict[str, str]) -> None:
    key = f"total-{uuid.uuid4().hex[:8]}"
    client = gateway({"m": upstream_apps["crawl"]}, UPSTREAM_TOTAL_TIMEOUT="1", UPSTREAM_IDLE_TIMEOUT="5")
    resp, took = timed(client, chat(key))
    assert resp.status_code == 504
    assert "UPSTREAM_TOTAL_TIMEOUT" in resp.get_json()["error"]["message"]
    assert took < 2.5
    stopped_at = time.monotonic()                        # and the abandoned job is stopped
    assert not CRAWL.wait_step_after(key, stopped_at + 2.0, timeout=2.5)


def read_sse(resp: requests.Response) -> Iterator[tuple[float, str]]:
    for line in resp.iter_lines(decode_unicode=True):
        if line:
            yield time.monotonic(), line


def test_stream_headers_wait_for_sse_keepalive_then_keepalives_flow(stream_gateway: Any) -> None:
    """`late` says its first word after 1.2 s; SSE_KEEPALIVE is 0.3 s."""
    started = time.monotonic()
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat(model="late", stream=True),
                         stream=True, timeout=10)
    headers_after = time.monotonic() - started
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert 0.25 < headers_after < 1.0                   # held back, but not until the first word
    lines = [line for _, line in read_sse(resp)]
    first_word = next(i for i, line in enumerate(lines) if "at last" in line)
    assert lines[:first_word].count(": keep-alive") >= 2
    assert lines[-1] == "data: [DONE]"


def test_what_arrived_is_sent_before_the_app_pauses(stream_gateway: Any) -> None:
    """Frames that are ready go out together, but never wait for the app's next event: not after
    a heartbeat, not after a snapshot with nothing new."""
    started = time.monotonic()
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat(model="burst", stream=True),
                         stream=True, timeout=10)
    seen: dict[str, float] = {}
    for at, line in read_sse(resp):
        if line.startswith("data: {"):
            content = json.loads(line[len("data: "):])["choices"][0]["delta"].get("content")
            if content and content.strip():
                seen[content.strip()] = at - started
    assert list(seen) == ["one", "two", "three"]
    assert seen["two"] < 0.6 < 0.9 < seen["three"]     # the app pauses 1.0 s before "three"


def test_silent_stream_gets_keepalives_then_a_504_error_event(stream_gateway: Any) -> None:
    started = time.monotonic()
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat(model="silent", stream=True),
                         stream=True, timeout=10)
    assert resp.status_code == 200
    events = list(read_sse(resp))
    lines = [line for _, line in events]
    assert ": keep-alive" in lines
    error = json.loads(lines[-2][len("data: "):])["error"]
    assert error["code"] == "upstream_timeout" and lines[-1] == "data: [DONE]"
    assert 1.4 < events[-1][0] - started < 3.0         # UPSTREAM_IDLE_TIMEOUT is 1.5


def test_error_before_the_first_event_is_json_with_its_status_when_streaming(gateway: Any,
                                                                              fake_gradio: Any) -> None:
    app = fake_gradio(call_replies=[(429, {"Retry-After": "7"}, {"detail": "slow down"})])
    resp = gateway({"m": app.url}).post("/v1/chat/completions", json=chat(stream=True))
    assert resp.status_code == 429 and resp.mimetype == "application/json"
    assert resp.headers["Retry-After"] == "7"
