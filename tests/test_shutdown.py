"""Graceful shutdown: on SIGTERM, open streams get GRACEFUL_TIMEOUT seconds to finish."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import requests

from tests.conftest import Gunicorn, gateway_env
from tests.fixtures_ops import chat, sse_events


def _content(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e.startswith("{")]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_sigterm_lets_an_open_stream_finish(models_file: Path):
    server = Gunicorn(gateway_env(models_file, GRACEFUL_TIMEOUT="20", LOG_FORMAT="json"), workers=1).wait_ready()
    try:
        body = chat("slow-app", stream=True, stop=["w30 "])
        with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=30,
                           headers={"X-Request-Id": "shutdown-1", "Connection": "close"}) as resp:
            events = sse_events(resp)
            received = [next(events), next(events)]        # the stream is under way
            server.proc.send_signal(signal.SIGTERM)
            received += list(events)
        assert received[-1] == "[DONE]"
        assert _content(received).endswith("w29 ")         # the whole answer, up to the stop sequence
        assert server.proc.wait(20) == 0
        log = server.output()
        assert log.index("Handling signal: term") < log.index('"request_id": "shutdown-1"')
    finally:
        server.stop()


def test_graceful_timeout_bounds_how_long_a_stream_may_hold_shutdown(models_file: Path):
    server = Gunicorn(gateway_env(models_file, GRACEFUL_TIMEOUT="1"), workers=1).wait_ready()
    try:
        body = chat("slow-app", stream=True)                 # 400 words, 20 s: longer than the grace
        received: list[str] = []
        with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=30) as resp:
            events = sse_events(resp)
            received += [next(events), next(events)]
            server.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                received += list(events)
            except requests.exceptions.ChunkedEncodingError:
                pass                                         # the worker was stopped mid-stream
        assert server.proc.wait(15) == 0
        assert time.monotonic() - started < 10
        assert "w399" not in _content(received)
    finally:
        server.stop()


def test_workers_import_the_gateway_only_after_gevent_patched_them(ops_gunicorn):
    # The master validates the configuration in a forked child: had it imported the gateway
    # (requests, ssl) itself, every worker would inherit an unpatched ssl and gevent would warn.
    assert "Booting worker" in ops_gunicorn.output()
    assert "MonkeyPatchWarning" not in ops_gunicorn.output()
