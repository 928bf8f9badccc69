"""Two builds of the gateway side by side, in one run: is the newer one no worse?

    python -m bench.versus BEFORE [AFTER]     # commits; AFTER defaults to the working tree

Each build is exported with `git archive` (the working tree is used as it is for AFTER when
none is named) and served by its own gunicorn (one gevent worker, `gunicorn.conf.py` of that
build) in front of the same real Gradio app (bench/realapp.py, the project's Gradio) and the
same stand-in. Then, so that the machine's drift falls on both alike:

- latency: one sample of each variant per round (direct Gradio protocol, each build non-stream
  and stream), the median of the per-round differences against *direct*;
- CPU per request: alternating loads of the stand-in's non-stream completion and its 50-chunk
  stream against each build (bench.loadgen, --loads each), the median over the loads.

The ratios after/before are the answer; a ratio above 1 is the newer build costing more.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import latency, procs
from .__main__ import SYSTEM, loadgen, machine, paired, write_models


def export(commit: str | None, into: Path) -> Path:
    """The build at `commit` (the working tree when None) as a directory of its own."""
    if commit is None:
        return procs.ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=procs.ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def cpu_per_request(build: procs.Gateway, model: str, seconds: float, stream_chunks: int | None) -> float:
    extra = ["--stream", "--message", f"chunks={stream_chunks} bench"] if stream_chunks else []
    before = build.cpu()
    result = loadgen("throughput", "--url", build.url, "--model", model, "--concurrency", "16",
                     "--duration", str(seconds), *extra, timeout=seconds + 60)
    if result.get("errors"):
        raise RuntimeError(f"{build.url}: {result['errors']} errors under load")
    return (build.cpu() - before) * 1000 / max(1, result["requests"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?")
    parser.add_argument("--rounds", type=int, default=150, help="latency rounds against the real app")
    parser.add_argument("--loads", type=int, default=4, help="CPU loads of each kind per build")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one CPU load")
    args = parser.parse_args(argv)
    procs.raise_nofile()
    started: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="bench-versus-") as tmp:
        work = Path(tmp)
        try:
            roots = {"before": export(args.before, work / "before"), "after": export(args.after, work / "after")}
            standin, standin_url = procs.start_standin()
            started.append(standin)
            app, app_url = procs.start_real_app()
            started.append(app)
            models = work / "models.yaml"
            write_models(models, standin_url, app_url)
            builds = {name: procs.start_gateway(models, 1, 1000, root=root) for name, root in roots.items()}
            started.extend(builds.values())
            before_load = procs.load_average()

            message = "bench"
            variants = {"direct": latency.Direct(app_url, "/chat", [message, SYSTEM, 64])}
            for name, build in builds.items():
                variants[name] = latency.ThroughGateway(build.url, "bench-gradio", message, stream=False)
                variants[f"{name}_stream"] = latency.ThroughGateway(build.url, "bench-gradio", message, stream=True)
            series = latency.interleaved(variants, args.rounds, warmup=max(3, args.rounds // 10))
            errors = {name: s.errors for name, s in series.items() if s.errors}
            if errors:
                raise RuntimeError(f"latency errors: {errors}")
            added = {name: paired(series[name], series["direct"]) for name in variants if name != "direct"}
            p50 = {name: latency.summary(s)["p50_ms"] for name, s in series.items()}

            cpu: dict[str, list[float]] = {f"{n}{k}": [] for n in builds for k in ("", "_stream")}
            for _ in range(args.loads):
                for name, build in builds.items():
                    cpu[name].append(cpu_per_request(build, "bench-standin", args.seconds, None))
                    cpu[f"{name}_stream"].append(cpu_per_request(build, "bench-standin", args.seconds, 50))
            cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
            after_load = procs.load_average()
        finally:
            for proc in reversed(started):
                proc.stop()

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a and b else "-"

    rows = [
        ("end-to-end p50, non-stream (real Gradio)", p50["before"], p50["after"]),
        ("end-to-end p50, stream (real Gradio)", p50["before_stream"], p50["after_stream"]),
        ("added latency, paired median, non-stream", added["before"], added["after"]),
        ("added latency, paired median, stream", added["before_stream"], added["after_stream"]),
        ("CPU per non-stream request (stand-in)", cpu_median["before"], cpu_median["after"]),
        ("CPU per 50-chunk stream (stand-in)", cpu_median["before_stream"], cpu_median["after_stream"]),
    ]
    print(f"\nbefore = {args.before}, after = {args.after or 'working tree'}; "
          f"direct p50 {p50['direct']:.2f} ms; load {before_load[0]:.2f} -> {after_load[0]:.2f}")
    print("| figure | before | after | after / before |\n|---|---|---|---|")
    for label, b, a in rows:
        print(f"| {label} | {b:.2f} ms | {a:.2f} ms | {ratio(a, b)} |")
    out = {"machine": machine(), "before": args.before, "after": args.after, "p50_ms": p50,
           "added_paired_ms": added, "cpu_ms": cpu, "load": [before_load, after_load]}
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    path = results / f"versus-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"raw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
