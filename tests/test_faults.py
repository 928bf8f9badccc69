"""A misbehaving upstream ends in the contract's status or stream error, in time, and the next request works.

Every case runs through a live gunicorn (gevent worker) with short timeouts
(UPSTREAM_IDLE_TIMEOUT=1, UPSTREAM_TOTAL_TIMEOUT=3, SSE_KEEPALIVE=0.3) in front
of tests/standins/faulty.py, which really misbehaves: nothing is patched.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.standins.faulty import Fault, FaultyGradio

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
SLACK = 2.5          # seconds of scheduling slack on a shared, busy 2-core machine
IDLE, TOTAL, KEEPALIVE = 1.0, 3.0, 0.3


@dataclass(frozen=True)
class Case:
    faults: tuple[Fault, ...]
    status: int
    code: str
    within: float                    # seconds the whole request may take
    # With stream=true: False, the error comes first (a JSON error with its status); True, after the
    # headers (an error event); None, either, depending on whether the gateway's retries of a
    # transient failure outlast SSE_KEEPALIVE.
    stream_error: bool | None = False
    retry_after: str | None = None   # the Retry-After the client must see ("any" = some positive integer)


def persistent(fault: Fault) -> tuple[Fault, ...]:
    """A fault that outlasts the gateway's retries of transient failures (the test clears the rest)."""
    return (fault,) * 6


CASES = {
    "http_500": Case((Fault("status", status=500),), 502, "upstream_error", SLACK),
    "http_502": Case(persistent(Fault("status", status=502)), 503, "upstream_unavailable", SLACK,
                     stream_error=None, retry_after="any"),
    "http_503_retry_after": Case(persistent(Fault("status", status=503, retry_after="7")), 503,
                                 "upstream_unavailable", SLACK, stream_error=None, retry_after="7"),
    "http_502_once_is_retried": Case((Fault("status", status=502),), 200, "", SLACK),
    "http_503_on_events": Case((Fault("status", status=503, at="events"),), 503, "upstream_unavailable",
                               SLACK, retry_after="any"),
    "http_429_retry_after": Case((Fault("status", status=429, retry_after="30"),), 429,
                                 "upstream_quota_exceeded", SLACK, retry_after="30"),
    "http_429": Case((Fault("status", status=429),), 429, "upstream_quota_exceeded", SLACK),
    "hang_before_answering_call": Case((Fault("hang"),), 504, "upstream_timeout", IDLE + SLACK,
                                       stream_error=True),
    "hang_before_first_event": Case((Fault("hang", at="events"),), 504, "upstream_timeout", IDLE + SLACK,
                                    stream_error=True),
    "dies_mid_stream": Case((Fault("die"),), 502, "upstream_error", SLACK, stream_error=True),
    "malformed_sse": Case((Fault("bad_sse"),), 502, "upstream_error", SLACK),
    "malformed_json": Case((Fault("bad_json"),), 502, "upstream_error", SLACK),
    "no_event_id": Case((Fault("no_event_id"),), 502, "upstream_error", SLACK),
    "heartbeats_forever": Case((Fault("heartbeat"),), 504, "upstream_timeout", TOTAL + SLACK,
                               stream_error=True),
    "app_error_event": Case((Fault("app_error", message="the GPU caught fire"),), 502, "upstream_error",
                            SLACK),
}


def chat(url: str, model: str, stream: bool, timeout: float = 15, **extra: Any) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", json={"model": model, **CHAT, "stream": stream, **extra},
                         timeout=timeout, stream=stream)


def sse_events(resp: requests.Response) -> list[Any]:
    """The stream's items: ":keep-alive" for comments, parsed JSON for data, "[DONE]"."""
    items: list[Any] = []
    for block in resp.text.split("\n\n"):
        if block.startswith(":"):
            items.append(":keep-alive")
        elif block.startswith("data: "):
            data = block[len("data: "):]
            items.append(data if data == "[DONE]" else json.loads(data))
    return items


def assert_error_body(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_retry_after(resp: requests.Response, expected: str | None) -> None:
    if expected == "any":
        assert resp.headers.get("Retry-After", "").isdigit() and int(resp.headers["Retry-After"]) > 0
    elif expected is not None:
        assert resp.headers.get("Retry-After") == expected


def assert_next_request_succeeds(url: str, model: str = "faulty") -> None:
    resp = chat(url, model, stream=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "word0 word1 word2"


def assert_nothing_left_open(faulty: FaultyGradio) -> None:
    """The gateway closed every event stream and hanging request it opened at the stand-in."""
    assert faulty.wait_for(lambda: faulty.counts["open_streams"] == 0 and faulty.counts["hanging"] == 0,
                           timeout=3), dict(faulty.counts)


def assert_unavailable(resp: requests.Response) -> None:
    """503 upstream_unavailable: as a JSON error, or (a stream whose retries outlasted SSE_KEEPALIVE)
    as the error event that ends the stream."""
    if resp.headers["Content-Type"].startswith("text/event-stream"):
        items = sse_events(resp)
        assert items[-1] == "[DONE]"
        assert_error_body(items[-2], "upstream_unavailable")
    else:
        assert resp.status_code == 503, resp.text
        assert_error_body(resp.json(), "upstream_unavailable")


@pytest.fixture(scope="module")
def idle_worker(probed_gunicorn) -> dict[str, Any]:
    """The worker's greenlets and sockets before any fault (taken when the first test starts)."""
    return probed_gunicorn.probe()


@pytest.fixture
def gateway(probed_gunicorn, idle_worker, fresh_faulty):
    return probed_gunicorn.url


@pytest.mark.parametrize("name", list(CASES))
def test_fault_without_stream_ends_in_contract_status_then_next_request_succeeds(gateway, fresh_faulty, name):
    case = CASES[name]
    fresh_faulty.apps["faulty"].inject(*case.faults)
    started = time.monotonic()
    resp = chat(gateway, "faulty", stream=False)
    elapsed = time.monotonic() - started
    assert resp.status_code == case.status, resp.text
    if case.status != 200:
        assert_error_body(resp.json(), case.code)
        assert_retry_after(resp, case.retry_after)
    assert elapsed < case.within, f"took {elapsed:.2f}s"
    assert_nothing_left_open(fresh_faulty)
    fresh_faulty.apps["faulty"].faults.clear()
    assert_next_request_succeeds(gateway)


@pytest.mark.parametrize("name", list(CASES))
def test_fault_in_stream_ends_in_status_or_error_event_then_next_request_succeeds(gateway, fresh_faulty, name):
    case = CASES[name]
    fresh_faulty.apps["faulty"].inject(*case.faults)
    started = time.monotonic()
    resp = chat(gateway, "faulty", stream=True)
    body = resp.content
    elapsed = time.monotonic() - started
    assert elapsed < case.within, f"took {elapsed:.2f}s"
    fresh_faulty.apps["faulty"].faults.clear()
    if case.status == 200:
        items = sse_events(resp)
        assert resp.status_code == 200 and items[-1] == "[DONE]"
        assert not any("error" in i for i in items if isinstance(i, dict))
    elif case.stream_error or (case.stream_error is None and resp.status_code == 200):
        # The headers went out (first event or SSE_KEEPALIVE): the error travels in the stream.
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        items = sse_events(resp)
        assert items[-1] == "[DONE]", body[-300:]
        assert_error_body(items[-2], case.code)
        assert all("error" not in i for i in items[:-2] if isinstance(i, dict))
        if elapsed > 2 * KEEPALIVE:
            assert ":keep-alive" in items, "a waiting stream gets keep-alive comments"
    else:
        # The error came before anything else: an ordinary JSON error with its real status.
        assert resp.status_code == case.status, body[:300]
        assert resp.headers["Content-Type"].startswith("application/json")
        assert_error_body(resp.json(), case.code)
        assert_retry_after(resp, case.retry_after)
    assert_nothing_left_open(fresh_faulty)
    assert_next_request_succeeds(gateway)


def test_app_error_message_is_passed_on(gateway, fresh_faulty):
    fresh_faulty.apps["faulty"].inject(Fault("app_error", message="the GPU caught fire"))
    resp = chat(gateway, "faulty", stream=False)
    assert "the GPU caught fire" in resp.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_refused_connections_give_503_then_the_next_request_succeeds(gateway, fresh_faulty, stream):
    assert_next_request_succeeds(gateway)          # the app's metadata is cached: only the call fails
    fresh_faulty.refuse()
    try:
        started = time.monotonic()
        resp = chat(gateway, "faulty", stream=stream)
        assert time.monotonic() - started < SLACK
        assert_unavailable(resp)
    finally:
        fresh_faulty.accept()
    assert_next_request_succeeds(gateway)


def test_unreachable_app_gives_503_before_anything_is_cached(gateway, fresh_faulty):
    started = time.monotonic()
    resp = chat(gateway, "nowhere", stream=True)
    assert time.monotonic() - started < 1.0 + SLACK
    assert_unavailable(resp)
    assert_next_request_succeeds(gateway)


@pytest.mark.parametrize("stream", [False, True])
def test_enormous_output_arrives_whole(gateway, fresh_faulty, stream):
    size = 4 * 1024 * 1024
    fresh_faulty.apps["faulty"].inject(Fault("enormous", size=size))
    resp = chat(gateway, "faulty", stream=stream, timeout=60)
    assert resp.status_code == 200, resp.text[:300]
    if stream:
        items = sse_events(resp)
        assert items[-1] == "[DONE]"
        text = "".join(i["choices"][0]["delta"].get("content", "") for i in items if isinstance(i, dict)
                       and i.get("choices"))
    else:
        text = resp.json()["choices"][0]["message"]["content"]
    assert text == "x" * size
    assert_next_request_succeeds(gateway)


@pytest.mark.parametrize("stream", [False, True])
def test_api_change_between_two_calls_is_invisible_to_users(gateway, fresh_faulty, stream):
    app = fresh_faulty.apps["redeployed"]
    assert_next_request_succeeds(gateway, "redeployed")      # caches API version 1: /chat(message)
    app.version = 2                                          # redeployed: /respond(message, system_prompt)
    resp = chat(gateway, "redeployed", stream=stream)
    assert resp.status_code == 200, resp.text
    if stream:
        items = sse_events(resp)
        assert items[-1] == "[DONE]" and not any("error" in i for i in items if isinstance(i, dict))
    seen = [(s.method, s.path) for s in fresh_faulty.requests_to("redeployed")]
    assert seen.count(("GET", "/config")) >= 2, "the gateway reloaded the app's description"
    assert ("POST", "/gradio_api/call/respond") in seen
    assert_next_request_succeeds(gateway, "redeployed")


@pytest.mark.parametrize("stream", [False, True])
def test_output_with_lone_surrogates_arrives_as_json_escapes(gateway, fresh_faulty, stream):
    """Gradio may emit text that JSON can carry and UTF-8 cannot (a lone surrogate): no internal error."""
    text = "half a pair \ud800 and a whole one \U0001F600"
    fresh_faulty.apps["faulty"].inject(Fault("output", message=text))
    resp = chat(gateway, "faulty", stream=stream)
    assert resp.status_code == 200, resp.text[:300]
    if stream:
        items = sse_events(resp)
        assert items[-1] == "[DONE]" and not any("error" in i for i in items if isinstance(i, dict)), items
        got = "".join(i["choices"][0]["delta"].get("content", "") for i in items if isinstance(i, dict)
                      and i.get("choices"))
    else:
        got = resp.json()["choices"][0]["message"]["content"]
    assert got == text
    assert_next_request_succeeds(gateway)


def test_faults_leave_no_greenlet_or_stream_behind(probed_gunicorn, idle_worker, fresh_faulty):
    """Runs last: after every fault above, the worker holds what it held before any of them."""
    assert_nothing_left_open(fresh_faulty)
    end = time.monotonic() + 10
    probe = probed_gunicorn.probe()
    while probe["greenlets"] > idle_worker["greenlets"] and time.monotonic() < end:
        time.sleep(0.2)   # polling a condition, with a deadline
        probe = probed_gunicorn.probe()
    assert probe["greenlets"] <= idle_worker["greenlets"], (idle_worker, probe)
    # Beyond the sockets it had, only idle pooled connections to the stand-in remain.
    pooled = fresh_faulty.counts["open_connections"]
    # (A pooled connection the stand-in has closed waits in CLOSE_WAIT until urllib3 next checks it.)
    assert probe["sockets"] - probe["close_wait"] <= idle_worker["sockets"] + pooled, (idle_worker, probe, pooled)


def test_a_call_answered_with_non_json_is_named_a_malformed_answer(gateway, fresh_faulty):
    fresh_faulty.apps["faulty"].inject(Fault("bad_json"))
    resp = chat(gateway, "faulty", stream=False)
    fresh_faulty.apps["faulty"].faults.clear()
    assert resp.status_code == 502
    assert "malformed answer" in resp.json()["error"]["message"]
