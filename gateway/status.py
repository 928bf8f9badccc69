"""What the gateway knows of each model, for the status page: no upstream is called to know it.

Each request's outcome is noted as a state (ready, quota, sleeping, building, paused, error stage,
unreachable, failing, timing out) with its time, in Prometheus gauges that gunicorn's workers
share (the latest time of each state wins across workers); the requests, errors and latency come
from the metrics every request already feeds; the Gradio version, protocol and mapping from the
app metadata this worker has cached.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import GatewayError, UpstreamQuota, UpstreamTimeout, UpstreamUnavailable
from .metrics import MULTIPROCESS

STATE_SEEN = Gauge("gateway_model_state_seen_timestamp_seconds",
                   "When a model was last seen in each state (ready, quota, sleeping, …): its state is the latest.",
                   ["model", "state"], multiprocess_mode="max")
RETRY_UNTIL = Gauge("gateway_model_retry_until_timestamp_seconds",
                    "Until when a model's Space asked to be left alone (a quota's or a stage's Retry-After).",
                    ["model"], multiprocess_mode="max")

# What each state means, as the page and the README say it.
MEANING = {
    "ready": "answered its last request",
    "unknown": "no request yet since the gateway started",
    "quota": "out of ZeroGPU quota (or rate limited) until the time shown",
    "sleeping": "the Space is asleep; the next request wakes it (slowly)",
    "building": "the Space is building; try again shortly",
    "paused": "the Space is paused by its owner",
    "error stage": "the Space is in an error stage on the Hub",
    "unreachable": "the app could not be reached (name, refused, TLS or its front answered 502/503)",
    "timing out": "the app did not answer within the timeouts",
    "failing": "the app answered its last request with an error",
    "cooling down": "the gateway leaves this Space alone until the time shown",
}


def state_of(error: GatewayError | None) -> str:
    """The state an outcome shows: ready for a success, else what the error says of the app."""
    if error is None:
        return "ready"
    if isinstance(error, UpstreamQuota):
        return "quota"
    if isinstance(error, UpstreamTimeout):
        return "timing out"
    if isinstance(error, UpstreamUnavailable):
        text = error.message.upper()
        for stage, state in (("SLEEPING", "sleeping"), ("BUILDING", "building"), ("PAUSED", "paused"),
                             ("ERROR", "error stage")):
            if stage in text:
                return state
        return "unreachable"
    return "failing"


def note(model: str | None, error: Any) -> None:
    """Note how a request for the model ended. Client errors (4xx of the caller) say nothing of the app."""
    if not model:
        return
    if error is not None and (not isinstance(error, GatewayError) or error.status_code < 500
                              and not isinstance(error, UpstreamQuota)):
        return
    now = time.time()
    STATE_SEEN.labels(model, state_of(error)).set(now)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, (int, float)):
        RETRY_UNTIL.labels(model).set(now + retry_after)


@dataclass
class ModelStatus:
    id: str
    spaces: list[str]
    state: str = "unknown"
    since: float | None = None
    retry_in: int | None = None
    requests: int = 0
    errors: int = 0
    latency_ms: float | None = None
    version: str = ""
    protocol: str = ""
    endpoint: str = ""
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def meaning(self) -> str:
        return MEANING.get(self.state, "")


def _families() -> Iterable[Any]:
    if not MULTIPROCESS:
        return REGISTRY.collect()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry.collect()


def _samples() -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for family in _families():
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def board(models: Iterable[Any], apps: dict[str, Any]) -> list[ModelStatus]:
    """A row per model: state, counts, latency and, where cached here, the app's description."""
    samples = _samples()
    now = time.time()
    rows = {m.id: ModelStatus(m.id, [m.space]) for m in models}
    latest: dict[str, float] = {}
    for s in samples.get("gateway_model_state_seen_timestamp_seconds", []):
        row = rows.get(s.labels.get("model"))
        if row is not None and s.value > latest.get(row.id, 0):
            latest[row.id] = s.value
            row.state, row.since = s.labels.get("state", "unknown"), s.value
    for s in samples.get("gateway_model_retry_until_timestamp_seconds", []):
        row = rows.get(s.labels.get("model"))
        if row is not None and row.state in ("quota", "building", "paused", "cooling down") and s.value > now:
            row.retry_in = int(s.value - now)
    for s in samples.get("gateway_requests_total", []):
        row = rows.get(s.labels.get("model"))
        if row is not None:
            row.requests += int(s.value)
            if s.labels.get("status", "").startswith("5") or s.labels.get("status") == "429":
                row.errors += int(s.value)
    sums = {s.labels.get("model"): s.value for s in samples.get("gateway_upstream_latency_seconds_sum", [])}
    counts = {s.labels.get("model"): s.value for s in samples.get("gateway_upstream_latency_seconds_count", [])}
    for model_id, count in counts.items():
        if model_id in rows and count:
            rows[model_id].latency_ms = round(sums.get(model_id, 0.0) / count * 1000, 1)
    for model_id, app in apps.items():
        row = rows.get(model_id)
        if row is None:
            continue
        row.version, row.protocol = app["version"], app["protocol"]
        row.endpoint, row.roles = app["endpoint"], app["roles"]
        if row.state == "unknown":
            row.state = "ready"           # its API was read: it answered at least that
    return list(rows.values())
