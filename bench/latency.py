"""Latency at concurrency 1: the gateway, Gradio's HTTP protocol straight to the app, gradio_client.

Every sample is timed from the first byte sent to the final answer (the
`complete` event, the JSON body, or `data: [DONE]`); time to first token (TTFT)
ends at the first event carrying answer text. Variants are interleaved, one
sample of each per round, so drift on a shared machine hits them alike.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import requests


@dataclass
class Sample:
    total: float
    ttft: float | None = None


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def totals(self) -> list[float]:
        return [s.total for s in self.samples]

    def ttfts(self) -> list[float]:
        return [s.ttft for s in self.samples if s.ttft is not None]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def sse_events(resp: requests.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream, parsed as they arrive."""
    buffer, kind, data = b"", "message", []
    for part in resp.iter_content(chunk_size=None):
        buffer += part
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            text = line.rstrip(b"\r").decode()
            if not text:
                if data:
                    yield kind, "\n".join(data)
                kind, data = "message", []
            elif text.startswith("event:"):
                kind = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].lstrip())


def drain(events: Iterator[Any]) -> None:
    """Read a response to its end through the iterator already reading it, so the connection goes
    back to the pool. A second iter_content() would leave the first generator suspended inside
    urllib3, which closes the pooled connection when that generator is collected."""
    for _ in events:
        pass


class Direct:
    """A completion sent straight to the app over Gradio's HTTP protocol (what the gateway does)."""

    def __init__(self, base_url: str, api_name: str, data: list[Any], verify: bool | str = True) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = verify        # an HTTPS app's CA (bench/tlsca.py): checks stay on
        self.base = base_url.rstrip("/") + "/gradio_api/call/" + api_name.strip("/")
        self.data = data

    def __call__(self) -> Sample:
        t0 = time.perf_counter()
        event_id = self.session.post(self.base, json={"data": self.data}, timeout=30).json()["event_id"]
        ttft = None
        with self.session.get(f"{self.base}/{event_id}", stream=True, timeout=30) as resp:
            events = sse_events(resp)
            for kind, data in events:
                if kind in ("generating", "complete") and ttft is None:
                    outputs = json.loads(data)
                    if outputs and outputs[0]:
                        ttft = time.perf_counter() - t0
                if kind == "complete":
                    total = time.perf_counter() - t0
                    break
                if kind == "error":
                    raise RuntimeError(f"the app failed: {data}")
            else:
                raise RuntimeError("the event stream ended without `complete`")
            drain(events)
        return Sample(total, ttft)


class ThroughGateway:
    """The same completion through the gateway's /v1/chat/completions."""

    def __init__(self, gateway_url: str, model: str, message: str, stream: bool) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.url = gateway_url.rstrip("/") + "/v1/chat/completions"
        self.body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": message}]}
        self.stream = stream

    def __call__(self) -> Sample:
        t0 = time.perf_counter()
        if not self.stream:
            resp = self.session.post(self.url, json=self.body, timeout=30)
            _check(resp)
            if not resp.json()["choices"][0]["message"]["content"]:
                raise RuntimeError("empty completion")
            return Sample(time.perf_counter() - t0)
        ttft = None
        with self.session.post(self.url, json=self.body, stream=True, timeout=30) as resp:
            _check(resp)
            events = sse_events(resp)
            for _, data in events:
                if data == "[DONE]":
                    total = time.perf_counter() - t0
                    drain(events)
                    return Sample(total, ttft)
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"the gateway sent an error event: {chunk['error']}")
                if ttft is None:
                    choices = chunk.get("choices") or [{}]
                    if choices[0].get("delta", {}).get("content"):
                        ttft = time.perf_counter() - t0
        raise RuntimeError("the stream ended without [DONE]")


def _check(resp: requests.Response) -> None:
    """Raise on an error status, with the gateway's own message (why a TLS upstream failed, say)."""
    if resp.status_code >= 400:
        try:
            why = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            why = resp.text
        raise RuntimeError(f"HTTP {resp.status_code}: {why[:300]}")


class GradioClient:
    """gradio_client's Client.predict straight to the app: what a user would otherwise write."""

    def __init__(self, base_url: str, api_name: str, data: list[Any]) -> None:
        from gradio_client import Client

        self.client = Client(base_url, verbose=False, download_files=False)
        self.api_name = api_name
        self.data = data

    def __call__(self) -> Sample:
        t0 = time.perf_counter()
        self.client.predict(*self.data, api_name=self.api_name)
        return Sample(time.perf_counter() - t0)

    def close(self) -> None:
        self.client.close()


def interleaved(variants: dict[str, Callable[[], Sample]], rounds: int, warmup: int) -> dict[str, Series]:
    series = {name: Series(name) for name in variants}
    for i in range(warmup + rounds):
        for name, call in variants.items():
            try:
                sample = call()
            except Exception as exc:  # counted, not fatal: a latency run reports its errors
                series[name].errors += 1
                kind = f"{type(exc).__name__}: {str(exc)[:120]}"
                series[name].error_kinds[kind] = series[name].error_kinds.get(kind, 0) + 1
                continue
            if i >= warmup:
                series[name].samples.append(sample)
    return series


def summary(series: Series) -> dict[str, Any]:
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {"n": len(series.samples), "errors": series.errors, "error_kinds": series.error_kinds,
            "p50_ms": ms(percentile(series.totals(), 50)), "p99_ms": ms(percentile(series.totals(), 99)),
            "ttft_p50_ms": ms(percentile(series.ttfts(), 50)), "ttft_p99_ms": ms(percentile(series.ttfts(), 99))}


def client_cpu_per_call(base_url: str, calls: int) -> dict[str, float]:
    """Client-side CPU ms of one POST /gradio_api/call through requests, and through urllib3 alone.

    The gateway makes two such calls per completion; this is what its HTTP client costs.
    """
    import urllib3

    session = requests.Session()
    session.trust_env = False
    pool = urllib3.PoolManager()
    url = base_url.rstrip("/") + "/gradio_api/call/chat"
    body = {"data": ["bench", "You are a test bot.", 64], "session_hash": "0123456789abcdef"}
    variants = {
        "requests": lambda: session.post(url, json=body, timeout=(10, 60)).json(),
        "urllib3": lambda: json.loads(pool.request("POST", url, body=json.dumps(body).encode(),
                                                   headers={"Content-Type": "application/json"},
                                                   timeout=urllib3.Timeout(10, 60)).data),
    }
    out = {}
    for name, call in variants.items():
        for _ in range(max(5, calls // 10)):
            call()
        start = time.process_time()
        for _ in range(calls):
            call()
        out[f"{name}_cpu_ms"] = round((time.process_time() - start) * 1000 / calls, 3)
    return out
