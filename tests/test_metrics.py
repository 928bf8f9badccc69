"""GET /metrics: Prometheus text format, summed across gunicorn workers."""
from __future__ import annotations

import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import Gunicorn, gateway_env
from tests.fixtures_ops import access_lines, chat, metric, scrape, settle, sse_events

NAMES = {"gateway_requests_total", "gateway_upstream_latency_seconds", "gateway_time_to_first_token_seconds",
         "gateway_open_streams", "gateway_upstream_errors_total", "gateway_cache_hits_total",
         "gateway_cache_misses_total"}


def test_metrics_are_served_in_prometheus_text_format(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain; version=")
    text = resp.get_data(as_text=True)
    for name in NAMES:
        assert f"# TYPE {name} " in text


def _send(url: str, rid: str) -> str:
    resp = requests.post(url + "/v1/chat/completions", json=chat("plain-app", "count me"),
                         headers={"X-Request-Id": rid, "Connection": "close"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return rid


def _pids(server, request_ids: list[str]) -> set[int]:
    """Which workers served these requests (each access line names its process)."""
    return {line["pid"] for line in access_lines(server.output(), set(request_ids)).values()}


def test_requests_are_counted_across_two_workers(ops_gunicorn):
    url = ops_gunicorn.url
    labels = {"model": "plain-app", "status": "200", "stream": "false"}
    before = metric(scrape(url), "gateway_requests_total", **labels)
    with ThreadPoolExecutor(4) as pool:
        sent = list(pool.map(lambda i: _send(url, f"metrics-{i}"), range(4)))
        first = _pids(ops_gunicorn, sent)
        if len(first) == 1:
            # One worker took them all: stop it (gracefully); the other takes the next ones, and
            # the stopped worker's counts must stay in the sums.
            os.kill(first.pop(), signal.SIGTERM)
        for batch in range(1, 11):
            sent += pool.map(lambda i: _send(url, f"metrics-{i}"), range(4 * batch, 4 * batch + 4))
            if len(_pids(ops_gunicorn, sent)) >= 2:
                break
    assert len(_pids(ops_gunicorn, sent)) >= 2, "the requests did not reach two workers"
    for _ in range(4):   # whichever worker answers /metrics, it reports the sum over all of them
        assert metric(scrape(url), "gateway_requests_total", **labels) - before == len(sent)


def test_stream_counts_open_streams_and_time_to_first_token(ops_gunicorn):
    url = ops_gunicorn.url
    before = scrape(url)
    session = requests.Session()
    body = chat("slow-app", stream=True, stop=["w20 "])
    with session.post(url + "/v1/chat/completions", json=body, stream=True, timeout=30) as resp:
        events = sse_events(resp)
        next(events)                                      # the stream is open
        assert metric(scrape(url), "gateway_open_streams") == metric(before, "gateway_open_streams") + 1
        assert list(events)[-1] == "[DONE]"
    settle(session, url)
    after = scrape(url)
    assert metric(after, "gateway_open_streams") == metric(before, "gateway_open_streams")
    for name in ("gateway_time_to_first_token_seconds_count", "gateway_upstream_latency_seconds_count"):
        assert metric(after, name, model="slow-app") == metric(before, name, model="slow-app") + 1
    assert metric(after, "gateway_requests_total", model="slow-app", status="200", stream="true") == \
        metric(before, "gateway_requests_total", model="slow-app", status="200", stream="true") + 1


def test_upstream_errors_are_counted_by_kind(ops_gunicorn):
    url = ops_gunicorn.url
    before = scrape(url)
    session = requests.Session()
    failed = session.post(url + "/v1/chat/completions", json=chat("failing-app"), timeout=30)
    assert failed.status_code == 502
    unknown = session.post(url + "/v1/chat/completions", json=chat("no-such-model"), timeout=30)
    assert unknown.status_code == 404
    settle(session, url)
    after = scrape(url)
    assert metric(after, "gateway_upstream_errors_total", kind="upstream_error") == \
        metric(before, "gateway_upstream_errors_total", kind="upstream_error") + 1
    # An unknown model is the client's mistake, not an upstream failure.
    assert metric(after, "gateway_upstream_errors_total") == metric(before, "gateway_upstream_errors_total") + 1
    assert metric(after, "gateway_requests_total", model="", status="404") == \
        metric(before, "gateway_requests_total", model="", status="404") + 1


def test_cache_hits_and_misses_are_counted(ops_gunicorn):
    url = ops_gunicorn.url
    before = scrape(url)
    session = requests.Session()
    for _ in range(3):      # one connection: one worker, which builds the echo app's metadata once at most
        resp = session.post(url + "/v1/chat/completions", json=chat("echo-app"), timeout=30)
        assert resp.status_code == 200, resp.text
    settle(session, url)
    after = scrape(url)
    misses = metric(after, "gateway_cache_misses_total") - metric(before, "gateway_cache_misses_total")
    hits = metric(after, "gateway_cache_hits_total") - metric(before, "gateway_cache_hits_total")
    assert misses <= 1 and hits >= 2
    assert json.loads(resp.text)["model"] == "echo-app"


def test_gunicorn_cleans_the_metrics_dir_and_forgets_dead_workers_streams(models_file, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"left over from an earlier run")
    server = Gunicorn(gateway_env(models_file, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), LOG_FORMAT="json"),
                      workers=1).wait_ready()
    try:
        assert not (tmp_path / "counter_1.db").exists()
        body = chat("slow-app", stream=True)
        with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=30) as resp:
            events = sse_events(resp)       # kept: a dropped generator would close the connection
            next(events)
            assert metric(scrape(server.url), "gateway_open_streams") == 1
            [pid] = re.findall(r"Booting worker with pid: (\d+)", server.output())
            os.kill(int(pid), signal.SIGKILL)
        # The next scrape waits in the listen backlog until the master has reaped the dead worker
        # (child_exit) and booted another one.
        assert metric(scrape(server.url), "gateway_open_streams") == 0
    finally:
        server.stop()
