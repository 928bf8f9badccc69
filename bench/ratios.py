"""Issue 16's targets as ratios of figures measured side by side in one run, each with its target.

Machines differ twofold in absolute speed and are noisy; a ratio of two figures taken in
the same run, interleaved or alternating, is what carries from one machine to another.
"""
from __future__ import annotations

from typing import Any


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def target(name: str, value: float | None, op: str, bound: float, detail: str = "") -> dict[str, Any]:
    met = None if value is None else (value <= bound if op == "<=" else value >= bound)
    return {"name": name, "value": value, "op": op, "target": bound, "met": met, "detail": detail}


def _cpu(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for gw, fl, bound, label in (("load_non_stream", "load_floor", 2.5, "non-stream request"),
                                 ("load_stream_50", "load_floor_stream_50", 2.0, "50-chunk stream")):
        if gw in r and fl in r:
            g, f = r[gw]["gateway_cpu_ms_per_request"], r[fl]["gateway_cpu_ms_per_request"]
            out.append(target(f"CPU per {label}: gateway / floor", ratio(g, f), "<=", bound,
                              f"{g} / {f} ms"))
    return out


def _latency(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label in (("latency_gradio", "real Gradio"), ("latency_gradio_tls", "real Gradio over TLS")):
        if lat := r.get(key):
            d = lat["direct"]["p50_ms"]
            for variant, kind in (("gateway", "non-stream"), ("gateway_stream", "stream")):
                g = lat[variant]["p50_ms"]
                errors = lat[variant]["errors"] + lat["direct"]["errors"]
                out.append(target(f"p50 {kind}, gateway / direct keep-alive client ({label})", ratio(g, d),
                                  "<=", 1.10, f"{g} / {d} ms" + (f", {errors} errors" if errors else "")))
    return out


def _reconnects(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, label in (("reconnects_gradio", "real Gradio"), ("reconnects_gradio_tls", "real Gradio over TLS")):
        if rc := r.get(key):
            out.append(_reconnect_row(f"reconnects per completion ({label})", rc))
    for version, rc in ((r.get("generations") or {}).get("reconnects") or {}).items():
        out.append(_reconnect_row(f"reconnects per completion (Gradio {version})", rc))
    return out


def _reconnect_row(name: str, rc: dict[str, Any]) -> dict[str, Any]:
    value = rc["per_completion"] if not rc["errors"] else None    # a failed completion proves nothing
    detail = f"{rc['new_connections']} new / {rc['completions']} completions"
    if rc["errors"]:
        detail += f", {rc['errors']} errors: {next(iter(rc['error_kinds']))[:110]}"
    return target(name, value, "<=", 0.01, detail)


def _capacity(r: dict[str, Any]) -> list[dict[str, Any]]:
    cap = r.get("capacity")
    if not cap:
        return []
    best = cap["at_max"] or {}
    return [target(f"memory per open stream, PSS (KiB, at {best.get('streams', 0)} streams)",
                   best.get("pss_per_stream_kib"), "<=", 40, f"RSS {best.get('rss_per_stream_kib')} KiB"),
            target(f"open streams, zero errors ({cap['workers']} workers)", cap["max_streams_zero_errors"],
                   ">=", 8000, f"tried up to {cap['tried_up_to']}")]


def compute(r: dict[str, Any]) -> list[dict[str, Any]]:
    return _cpu(r) + _latency(r) + _reconnects(r) + _capacity(r)
