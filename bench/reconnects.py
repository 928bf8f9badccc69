"""Reconnects per completion: new TCP connections an app accepts per completion through the gateway.

The app counts the connections it accepts itself (bench/conncount.py), so the figure is
exact whatever the gateway's pools do. After a warm-up, N sequential completions, stream
and non-stream alternating, each from a fresh client connection so the kernel spreads them
over every gunicorn worker (and every worker's pool is exercised), go through the gateway;
the figure is (connections after - before) / N.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import conncount, latency

MESSAGE = "bench"


def completions(gateway: str, model: str, n: int) -> dict[str, int]:
    """n completions through the gateway, stream and non-stream alternating; failures counted by kind."""
    errors: dict[str, int] = {}
    for i in range(n):
        call = latency.ThroughGateway(gateway, model, MESSAGE, stream=bool(i % 2))
        try:
            call()
        except Exception as exc:  # counted, not fatal: the figure says how many failed
            kind = f"{type(exc).__name__}: {str(exc)[:160]}"
            errors[kind] = errors.get(kind, 0) + 1
        finally:
            call.session.close()
    return errors


def per_completion(gateway: str, model: str, count_file: Path, n: int, warmup: int = 20) -> dict[str, Any]:
    completions(gateway, model, warmup)
    before = conncount.read(count_file)
    errors = completions(gateway, model, n)
    new = conncount.read(count_file) - before
    return {"completions": n, "errors": sum(errors.values()), "error_kinds": errors,
            "new_connections": new, "per_completion": round(new / n, 4)}
