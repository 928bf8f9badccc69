"""One line per Gradio generation: the same streaming chat through the gateway on each.

Each generation's `chat_stream` app (tests/generations/space_apps.py, in its own cached venv of
tests/generations/venvs.py) answers "echo: <message>" word by word. The gateway is timed against
each, interleaved round by round so the machine's load falls on all alike: p50 of a non-stream
completion, of a stream, and the time to its first token. Only generations whose venv is already
built are measured (`make venvs` builds them); the others are listed as skipped. Each app runs
under bench/conncount.py, which counts the TCP connections it accepts: the connections accepted
during the timed rounds, per completion, are the generation's reconnects per completion.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from . import conncount, latency, procs

MESSAGE = "how fast is each generation"


def _venvs() -> Any:
    from tests.generations import venvs   # noqa: PLC0415 - the test tree is optional for bench/
    return venvs


def start(workdir: Path, smoke: bool = False) -> tuple[dict[str, subprocess.Popen], dict[str, str], list[str]]:
    """Start the chat_stream app of every generation whose venv is built; their URLs by version.
    A smoke run takes two: the project's own Gradio and the websocket generation."""
    venvs = _venvs()
    script = procs.ROOT / "tests" / "generations" / "space_apps.py"
    started, skipped = {}, []
    for version in venvs.ALL:
        if smoke and version not in (venvs.OWN, "3.50.2"):
            continue
        python = Path(os.sys.executable) if version == venvs.OWN else venvs.python_of(version)
        if version != venvs.OWN and not venvs.is_built(version):
            skipped.append(version)
            continue
        port_file = workdir / f"{version}.json"
        env = {**os.environ, **venvs.RUN_ENV, "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        log = open(workdir / f"{version}.log", "w")
        counted = [str(procs.ROOT / "bench" / "conncount.py"), "--count-file", str(count_file(workdir, version))]
        started[version] = subprocess.Popen([str(python), *counted, str(script), "--port-file", str(port_file),
                                             "--cancel-dir", str(workdir), "--only", "chat_stream"],
                                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    urls = {}
    deadline = time.monotonic() + 300
    for version, proc in started.items():
        port_file = workdir / f"{version}.json"
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if port_file.exists():
            urls[version] = json.loads(port_file.read_text())["apps"]["chat_stream"]
        else:
            skipped.append(version)
    return started, urls, skipped


def count_file(workdir: Path, version: str) -> Path:
    """Where a generation's app counts the connections it accepts (bench/conncount.py)."""
    return workdir / f"{version}.connections"


def models(urls: dict[str, str]) -> dict[str, dict[str, str]]:
    return {f"gen-{v}": {"space": url} for v, url in urls.items()}


def measure(gateway: str, urls: dict[str, str], rounds: int,
            counts: dict[str, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """p50s per generation, all generations interleaved round by round; and the connections each
    app accepted during those rounds (after the warm-up), per completion."""
    variants = {}
    for version in urls:
        variants[f"{version} non-stream"] = latency.ThroughGateway(gateway, f"gen-{version}", MESSAGE, stream=False)
        variants[f"{version} stream"] = latency.ThroughGateway(gateway, f"gen-{version}", MESSAGE, stream=True)
    latency.interleaved(variants, 0, warmup=3)
    before = {version: conncount.read(counts[version]) for version in urls}
    series = latency.interleaved(variants, rounds, warmup=0)
    out: dict[str, Any] = {}
    reconnects: dict[str, Any] = {}
    for version in urls:
        plain, stream = series[f"{version} non-stream"], series[f"{version} stream"]
        out[version] = {"non_stream_p50_ms": _ms(latency.percentile(plain.totals(), 50)),
                        "stream_p50_ms": _ms(latency.percentile(stream.totals(), 50)),
                        "ttft_p50_ms": _ms(latency.percentile(stream.ttfts(), 50)),
                        "errors": plain.errors + stream.errors, "n": len(plain.samples) + len(stream.samples)}
        new = conncount.read(counts[version]) - before[version]
        kinds = {**plain.error_kinds, **stream.error_kinds}
        reconnects[version] = {"completions": 2 * rounds, "errors": out[version]["errors"], "error_kinds": kinds,
                               "new_connections": new, "per_completion": round(new / (2 * rounds), 4)}
    return out, reconnects


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if seconds is not None else None


def stop(started: dict[str, subprocess.Popen]) -> None:
    for proc in started.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in started.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-gen-"))
