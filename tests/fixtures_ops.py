"""Fixtures for the ops tests: a two-worker gateway that logs JSON, and helpers to read it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gunicorn, gateway_env


@pytest.fixture(scope="session")
def ops_gunicorn(models_file: Path) -> Iterator[Gunicorn]:
    """A live gateway with two gevent workers and JSON logs, for metrics and logging tests."""
    server = Gunicorn(gateway_env(models_file, SSE_KEEPALIVE="1", LOG_FORMAT="json"), workers=2)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def scrape(base_url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of /metrics, read on a fresh connection (any worker may answer)."""
    resp = requests.get(base_url + "/metrics", headers={"Connection": "close"}, timeout=10)
    resp.raise_for_status()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(resp.text)
            for s in family.samples]


def metric(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples of name whose labels include the given ones."""
    return sum(value for sample, have, value in samples
               if sample == name and all(have.get(k) == v for k, v in labels.items()))


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def access_lines(output: str, request_ids: set[str]) -> dict[str, dict[str, Any]]:
    return {line["request_id"]: line for line in json_lines(output)
            if line.get("logger") == "gateway.access" and line.get("request_id") in request_ids}


def settle(session: requests.Session, base_url: str) -> None:
    """Return once the previous response on this connection was closed by the server.

    A worker serves one connection's requests in order and closes each response
    (running its access-log and metrics hooks) before it reads the next one.
    """
    session.get(base_url + "/healthz", timeout=10).raise_for_status()


def sse_events(resp: requests.Response) -> Iterator[str]:
    """The data: payloads of an SSE response, as they arrive."""
    for line in resp.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            yield line[len("data: "):]


def chat(model: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
