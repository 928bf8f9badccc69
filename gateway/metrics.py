"""Prometheus metrics, correct across gunicorn workers (prometheus_client's multiprocess mode).

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports this
module: each worker then writes its values to files there, and /metrics (served
by whichever worker) sums them. Without it (flask run, the test client, a host
app that embeds the gateway) the process's default registry serves.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# prometheus_client picks its value store when it is imported: decide once, the same way.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Upstream answers take from a fraction of a second to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

REQUESTS = Counter("gateway_requests", "API requests, by model, HTTP status and stream flag.",
                   ["model", "status", "stream"])
UPSTREAM_LATENCY = Histogram("gateway_upstream_latency_seconds",
                             "From the start of an upstream job to its end (answer complete or failed).",
                             ["model"], buckets=LATENCY_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("gateway_time_to_first_token_seconds",
                                "From the request's arrival to the first output of the upstream job.",
                                ["model"], buckets=LATENCY_BUCKETS)
OPEN_STREAMS = Gauge("gateway_open_streams", "SSE responses being sent right now.",
                     multiprocess_mode="livesum")
UPSTREAM_ERRORS = Counter("gateway_upstream_errors", "Failed upstream jobs, by kind (the error code).",
                          ["kind"])
UPSTREAM_WAITS = Counter("gateway_upstream_waits", "Status updates of upstream jobs that wait (a Space "
                         "waking, a queue position or estimate), by kind.", ["kind"])
CACHE_HITS = Counter("gateway_cache_hits", "App metadata found in the cache.")
CACHE_MISSES = Counter("gateway_cache_misses", "App metadata built because the cache lacked it.")

_seen_lock = threading.Lock()
_seen: "weakref.WeakKeyDictionary[Any, tuple[int, int]]" = weakref.WeakKeyDictionary()


def sync_cache(cache: Any) -> None:
    """Add what a BuildOnceCache counted (its hits and misses) since the last call.

    The cache keeps plain per-process counters; copying their growth here keeps
    the upstream layer free of Prometheus.
    """
    hits, misses = getattr(cache, "hits", None), getattr(cache, "misses", None)
    if not isinstance(hits, int) or not isinstance(misses, int):
        return
    with _seen_lock:
        old_hits, old_misses = _seen.get(cache, (0, 0))
        _seen[cache] = (hits, misses)
    if hits > old_hits:
        CACHE_HITS.inc(hits - old_hits)
    if misses > old_misses:
        CACHE_MISSES.inc(misses - old_misses)


def exposition() -> bytes:
    """The text format of every metric, summed over the live and dead workers."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)
