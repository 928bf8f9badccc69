"""gateway/pipeline.py through a live gunicorn: n jobs and /v1/responses keep CONTRACT §7's cancellation.

A client that leaves a stream of n choices, a non-stream request of n choices, or a
Responses API stream gets every upstream job cancelled within 2 seconds.
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
from tests.test_cancellation import CANCEL_WITHIN, stopped_after


def test_closed_stream_of_n_choices_cancels_every_job(stream_gateway: Any) -> None:
    key = f"n-stream-{uuid.uuid4().hex[:8]}"
    resp = requests.post(stream_gateway.url + "/v1/chat/completions", json=chat(key, "crawl", stream=True, n=3),
                         stream=True, timeout=10)
    assert resp.status_code == 200
    lines = resp.iter_lines()
    seen: set[int] = set()
    for line in lines:
        if line.startswith(b"data: {") and b'"content":"w' in line:
            seen.add(json.loads(line[6:])["choices"][0]["index"])
        if seen == {0, 1, 2}:
            break
    assert CRAWL.wait_steps(key, 9, timeout=5)
    left_at = time.monotonic()
    resp.close()
    latency = stopped_after(key, left_at)
    print(f"n=3 stream cancel latency {latency:.2f}s after {len(CRAWL.steps[key])} steps")
    assert latency < CANCEL_WITHIN


def test_dropped_non_stream_request_of_n_choices_cancels_every_job(stream_gateway: Any) -> None:
    key = f"n-plain-{uuid.uuid4().hex[:8]}"
    body = json.dumps(chat(key, "crawl", n=2)).encode()
    sock = socket.create_connection(("127.0.0.1", stream_gateway.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert CRAWL.wait_steps(key, 6, timeout=5)
    left_at = time.monotonic()
    sock.close()
    assert stopped_after(key, left_at) < CANCEL_WITHIN


def test_closed_responses_stream_cancels_the_job(stream_gateway: Any) -> None:
    key = f"resp-{uuid.uuid4().hex[:8]}"
    resp = requests.post(stream_gateway.url + "/v1/responses",
                         json={"model": "crawl", "input": key, "stream": True}, stream=True, timeout=10)
    assert resp.status_code == 200
    lines = resp.iter_lines()
    assert any(b"response.output_text.delta" in line for line in lines)
    assert CRAWL.wait_steps(key, 3, timeout=5)
    left_at = time.monotonic()
    resp.close()
    assert stopped_after(key, left_at) < CANCEL_WITHIN
