"""What the gateway knows of each model, for the status page: no upstream is called to know it.

Each request's outcome is noted as a state (ready, quota, sleeping, building, paused, error stage,
unauthorized, not found, unreachable, failing, timing out) with its time, in Prometheus gauges
that gunicorn's workers share (the latest time of each state wins across workers); errors of the
app are counted per model from the exchange's own error (so one sent mid-stream, under a 200,
counts too). A pool's members are read from the shared cooldowns (REDIS_URL's, or this
process's). The requests and latency come from the metrics every request already feeds; the
Gradio version, protocol and mapping, and the last error's message, from this worker's memory.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import (GatewayError, SpaceNotFound, UpstreamError, UpstreamQuota, UpstreamTimeout,
                     UpstreamUnauthorized, UpstreamUnavailable)
from .metrics import MULTIPROCESS

STATE_SEEN = Gauge("gateway_model_state_seen_timestamp_seconds",
                   "When a model was last seen in each state (ready, quota, sleeping, …): its state is the latest.",
                   ["model", "state"], multiprocess_mode="max")
RETRY_UNTIL = Gauge("gateway_model_retry_until_timestamp_seconds",
                    "Until when a model's Space asked to be left alone (a quota's or a stage's Retry-After).",
                    ["model"], multiprocess_mode="max")
MODEL_ERRORS = Counter("gateway_model_errors", "Requests for a model that ended in an error of its app "
                       "(one sent mid-stream included), by model and error code.", ["model", "code"])

# What each state means, as the page and the README say it.
MEANING = {
    "ready": "answered its last request",
    "unknown": "no request yet since the gateway started",
    "quota": "out of ZeroGPU quota (or rate limited) until the time shown",
    "cooling down": "every Space of the pool failed recently; the gateway leaves them alone until the time shown",
    "sleeping": "the Space is asleep; the next request wakes it (slowly)",
    "building": "the Space is building or starting; try again shortly",
    "paused": "the Space is paused by its owner",
    "error stage": "the Space is in an error stage on the Hub",
    "unauthorized": "the Hub or the Space refused the credentials sent (a private Space, or a missing one "
                    "asked without a token): give the gateway a token that can read it",
    "not found": "the Hub says the Space does not exist: fix its id in the models file",
    "unreachable": "the app could not be reached (name, refused, TLS or its front answered 502/503)",
    "timing out": "the app did not answer within the timeouts",
    "failing": "the app answered its last request with an error",
}
# How hub.py names a Space's stage in its errors ("its stage is PAUSED", "starting (BUILDING)").
STAGE_TEXT = re.compile(r"(?:stage(?: is)?|starting \()\s*([A-Z_]+)")
STAGES = {"SLEEPING": "sleeping", "BUILDING": "building", "APP_STARTING": "building", "STARTING": "building",
          "PAUSED": "paused", "STOPPED": "paused"}
LAST_ERRORS_KEPT = 512          # models whose last error this worker remembers (ids may be made up)
_last_errors: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
_last_lock = threading.Lock()


def state_of(error: GatewayError | None) -> str:
    """The state an outcome shows: ready for a success, else what the error says of the app."""
    if error is None:
        return "ready"
    if isinstance(error, UpstreamQuota):
        return "quota"
    if isinstance(error, UpstreamUnauthorized):
        return "unauthorized"
    if isinstance(error, SpaceNotFound):
        return "not found"
    if isinstance(error, (UpstreamUnavailable, UpstreamTimeout)):
        stage = STAGE_TEXT.search(error.message)
        if stage:
            name = stage.group(1)
            return STAGES.get(name, "error stage" if "ERROR" in name or name == "NO_APP_FILE" else "unreachable")
        return "timing out" if isinstance(error, UpstreamTimeout) else "unreachable"
    return "failing"


def says_of_app(error: Any) -> bool:
    """Whether an outcome tells something of the model's app (a caller's own 4xx does not)."""
    return error is None or isinstance(error, UpstreamError) or \
        isinstance(error, GatewayError) and error.status_code >= 500


def record(model: str | None, error: Any) -> None:
    """A request for the model ended: note its state, and count it when its app failed it."""
    if not model or not says_of_app(error):
        return
    note(model, error)
    if error is not None:
        MODEL_ERRORS.labels(model, error.code or "unknown").inc()


def note(model: str | None, error: Any) -> None:
    """Note what the model's app did (a request's end, or Check now); a caller's 4xx is ignored."""
    if not model or not says_of_app(error):
        return
    now = time.time()
    STATE_SEEN.labels(model, state_of(error)).set(now)
    if error is None:
        return
    if isinstance(error.retry_after, (int, float)):
        RETRY_UNTIL.labels(model).set(now + error.retry_after)
    with _last_lock:          # the message comes redacted of the credentials its request sent
        _last_errors[model] = (now, error.code or "", error.message[:300])
        _last_errors.move_to_end(model)
        while len(_last_errors) > LAST_ERRORS_KEPT:
            _last_errors.popitem(last=False)


def cooldowns(shared: Any, models: Iterable[Any], holder: str | None = None) -> dict[str, Any]:
    """Each pool member's cooldown now, by Space, from the shared state (one round trip to Redis):
    a quota cooldown as the holder (a credential's fingerprint) sees it, as /metrics shows what a
    request without its own token would meet."""
    members = sorted({member for m in models if m.spaces for member in m.members})
    return shared.cooling(members, holder)[0] if members else {}


@dataclass
class MemberStatus:
    """One Space of a model: what was read of its app and, in a pool, whether it cools down."""

    space: str
    state: str = ""                  # a pool member's: "available" or "cooling down"
    retry_in: int | None = None
    reason: str = ""                 # why it cools down: quota or unavailable
    version: str = ""
    protocol: str = ""
    endpoint: str = ""
    roles: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelStatus:
    id: str
    members: list[MemberStatus]
    state: str = "unknown"
    since: float | None = None
    retry_in: int | None = None
    requests: int = 0
    errors: int = 0
    latency_ms: float | None = None
    last_error: tuple[float, str, str] | None = None     # (when, code, message)

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


def board(models: Iterable[Any], apps: dict[str, dict[str, dict[str, Any]]],
          cooling: dict[str, Any]) -> list[ModelStatus]:
    """A row per model: state, counts, latency, its last error and each member Space.

    apps: by model id, then Space, what this worker read of the app; cooling: pool members'
    cooldowns by Space (`cooldowns()`)."""
    models = list(models)
    samples = _samples()
    now = time.time()
    rows = {m.id: ModelStatus(m.id, _members(m, apps.get(m.id, {}), cooling, now)) for m in models}
    _states(rows, samples, now)
    for s in samples.get("gateway_requests_total", []):
        row = rows.get(s.labels.get("model"))
        if row is not None:
            row.requests += int(s.value)
    for s in samples.get("gateway_model_errors_total", []):
        row = rows.get(s.labels.get("model"))
        if row is not None:
            row.errors += int(s.value)
    sums = {s.labels.get("model"): s.value for s in samples.get("gateway_upstream_latency_seconds_sum", [])}
    counts = {s.labels.get("model"): s.value for s in samples.get("gateway_upstream_latency_seconds_count", [])}
    for model_id, count in counts.items():
        if model_id in rows and count:
            rows[model_id].latency_ms = round(sums.get(model_id, 0.0) / count * 1000, 1)
    with _last_lock:
        for row in rows.values():
            row.last_error = _last_errors.get(row.id)
    for model in models:
        row = rows[model.id]
        if model.spaces and all(m.state == "cooling down" for m in row.members):
            row.state, row.retry_in = "cooling down", min(m.retry_in or 0 for m in row.members)
        elif row.state == "unknown" and any(m.version for m in row.members):
            row.state = "ready"           # its API was read: it answered at least that
    return list(rows.values())


def _members(model: Any, apps: dict[str, dict[str, Any]], cooling: dict[str, Any], now: float) -> list[MemberStatus]:
    found = []
    for space in model.members:
        member = MemberStatus(space, **apps.get(space, {}))
        if model.spaces:
            cooldown = cooling.get(space)
            member.state = "cooling down" if cooldown else "available"
            if cooldown:
                member.retry_in, member.reason = max(1, round(cooldown.until - now)), cooldown.reason
        found.append(member)
    return found


def _states(rows: dict[str, ModelStatus], samples: dict[str, list[Any]], now: float) -> None:
    """Each row's latest state across workers, and its time left where the Space asked for one."""
    latest: dict[str, float] = {}
    for s in samples.get("gateway_model_state_seen_timestamp_seconds", []):
        row = rows.get(s.labels.get("model"))
        if row is not None and s.value > latest.get(row.id, 0):
            latest[row.id] = s.value
            row.state, row.since = s.labels.get("state", "unknown"), s.value
    for s in samples.get("gateway_model_retry_until_timestamp_seconds", []):
        row = rows.get(s.labels.get("model"))
        if row is not None and row.state in ("quota", "building", "paused") and s.value > now:
            row.retry_in = int(s.value - now)
