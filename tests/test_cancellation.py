"""CONTRACT §7: a client that leaves gets its upstream job cancelled within 2 seconds.

Through a live gunicorn with gevent workers, counting the steps a slow real
Gradio app runs after the client left.
"""
from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import requests

from tests.fixtures_upstream import chat
from tests.standins.apps import CRAWL

CANCEL_WITHIN = 2.0


def stopped_after(key: str, left_at: float) -> float:
    """Seconds from the client leaving to the app's last step (fails if it never stops)."""
    deadline = left_at + CANCEL_WITHIN + 1.0
    while CRAWL.wait_step_after(key, CRAWL.last(key), timeout=0.5):   # another step within 0.5 s
        assert time.monotonic() < deadline, "the app kept working after the client left"
    return CRAWL.last(key) - left_at


def test_closed_stream_cancels_the_upstream_job(stream_gateway: Any) -> None:
    key = f"stream-{uuid.uuid4().hex[:8]}"
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat(key, "crawl", stream=True),
                         stream=True, timeout=10)
    assert resp.status_code == 200
    lines = resp.iter_lines()       # kept referenced: a collected iterator would close the connection
    assert any(b'"content":"w' in line for line in lines)               # the app is producing
    assert CRAWL.wait_steps(key, 3, timeout=5)
    left_at = time.monotonic()
    resp.close()
    latency = stopped_after(key, left_at)
    print(f"stream cancel latency {latency:.2f}s after {len(CRAWL.steps[key])} steps")
    assert latency < CANCEL_WITHIN
    assert len(CRAWL.steps[key]) < 100          # of 400


def test_dropped_non_stream_request_cancels_the_upstream_job(stream_gateway: Any) -> None:
    key = f"plain-{uuid.uuid4().hex[:8]}"
    body = json.dumps(chat(key, "crawl")).encode()
    sock = socket.create_connection(("127.0.0.1", stream_gateway.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert CRAWL.wait_steps(key, 3, timeout=5)          # the job runs; nothing was sent back yet
    left_at = time.monotonic()
    sock.close()
    latency = stopped_after(key, left_at)
    print(f"non-stream cancel latency {latency:.2f}s after {len(CRAWL.steps[key])} steps")
    assert latency < CANCEL_WITHIN


def test_closed_stream_of_a_silent_job_is_cancelled_upstream(stream_gateway: Any) -> None:
    """A job that has produced nothing yet (queued, waiting for a GPU) is cancelled too."""
    silent = stream_gateway.standins["silent"]
    before = len(silent.cancelled)
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat("wait", "silent", stream=True),
                         stream=True, timeout=10)
    assert resp.status_code == 200                      # headers went out after SSE_KEEPALIVE
    accepted = silent.accepted[-1]
    left_at = time.monotonic()
    resp.close()
    while accepted not in silent.cancelled[before:]:
        assert time.monotonic() - left_at < CANCEL_WITHIN, "no /cancel reached the app"
        time.sleep(0.05)     # polling the stand-in's record; the deadline above is the assertion
