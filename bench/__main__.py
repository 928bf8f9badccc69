"""`make bench` / `python -m bench`: every figure of issue 6 in one run, as a table and JSON.

    python -m bench            the full run (a few minutes)
    python -m bench --smoke    tiny sizes, to prove the harness works (tests/test_bench_smoke.py)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from . import generations, latency, procs, profile, ratios, reconnects, tlsca
from .report import render_table

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEM = "You are a test bot."          # the echo app's and the stand-in's default system message
# (what is loaded, chunks per stream or None for non-stream) -> its key in the results
LOAD_KEYS = {("gateway", None): "load_non_stream", ("gateway", 50): "load_stream_50",
             ("floor", None): "load_floor", ("floor", 50): "load_floor_stream_50"}


_T0 = time.monotonic()


def say(what: str) -> None:
    """A progress line, with the seconds since the run started (where a run spends its time)."""
    print(f"[{time.monotonic() - _T0:5.0f} s] {what}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the harness, measures nothing")
    parser.add_argument("--rounds", type=int, help="latency samples per variant")
    parser.add_argument("--duration", type=float, help="seconds of each throughput run")
    parser.add_argument("--concurrency", type=int, help="connections of the throughput runs")
    parser.add_argument("--levels", help="open-stream levels to try, ascending, e.g. 500,1000,2000,3000")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="gunicorn workers (default: cores, like WEB_CONCURRENCY's default)")
    parser.add_argument("--no-gradio", action="store_true", help="skip the real Gradio app (stand-in only)")
    parser.add_argument("--no-generations", action="store_true",
                        help="skip the line per Gradio generation (needs the venvs of make venvs)")
    parser.add_argument("--no-tls", action="store_true", help="skip the real Gradio app over HTTPS")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/<time>.json)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the workers during the load runs (collapsed stacks in bench/results/)")
    args = parser.parse_args(argv)
    small = args.smoke
    args.rounds = args.rounds or (5 if small else 300)
    args.duration = args.duration or (1.0 if small else 8.0)
    args.concurrency = args.concurrency or (4 if small else 32)
    args.levels = [int(x) for x in (args.levels or ("20" if small else "1000,2000,4000,8000")).split(",")]
    return args


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    versions = {}
    for dist in ("gradio", "gradio_client", "gunicorn", "gevent", "Flask", "requests"):
        try:
            from importlib.metadata import version
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "versions": versions,
            "uptime": uptime(), "git": git_state()}


def uptime() -> str:
    """`uptime`'s line (load average included), or /proc/loadavg where the command is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(str(x) for x in procs.load_average())


def git_state() -> dict[str, Any]:
    """Which gateway code was measured: the commit, and whether gateway/ had uncommitted edits."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=procs.ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    return {"commit": git("rev-parse", "HEAD") or os.environ.get("BENCH_COMMIT") or None,
            "gateway_dirty": bool(git("status", "--porcelain", "--", "gateway", "gunicorn.conf.py", "wsgi.py"))}


def write_models(path: Path, standin: str, real: str | None, extra: dict[str, Any] | None = None) -> None:
    models = {"bench-standin": {"space": standin, "api_name": "/chat"}, **(extra or {})}
    if real:
        models["bench-gradio"] = {"space": real, "api_name": "/chat"}
    path.write_text(json.dumps({"models": models}))   # JSON is valid YAML


def measure_latency(gateway: str, app_url: str, model: str, rounds: int, with_client: bool,
                    verify: bool | str = True) -> dict[str, Any]:
    message = "bench"
    data = [message, SYSTEM, 64]
    variants: dict[str, Any] = {
        "direct": latency.Direct(app_url, "/chat", data, verify),
        "gateway": latency.ThroughGateway(gateway, model, message, stream=False),
        "gateway_stream": latency.ThroughGateway(gateway, model, message, stream=True),
    }
    client = latency.GradioClient(app_url, "/chat", data) if with_client else None
    if client is not None:
        variants["gradio_client"] = client
    try:
        series = latency.interleaved(variants, rounds, warmup=max(3, rounds // 10))
    finally:
        if client is not None:
            client.close()
    out = {name: latency.summary(s) for name, s in series.items()}
    d, g, s = out["direct"], out["gateway"], out["gateway_stream"]
    diff = lambda a, b: None if a is None or b is None else round(a - b, 3)  # noqa: E731
    out["added"] = {"non_stream_p50_ms": diff(g["p50_ms"], d["p50_ms"]),
                    "non_stream_p99_ms": diff(g["p99_ms"], d["p99_ms"]),
                    "stream_p50_ms": diff(s["p50_ms"], d["p50_ms"]),
                    "stream_p99_ms": diff(s["p99_ms"], d["p99_ms"]),
                    "ttft_p50_ms": diff(s["ttft_p50_ms"], d["ttft_p50_ms"]),
                    "ttft_p99_ms": diff(s["ttft_p99_ms"], d["ttft_p99_ms"]),
                    # The median of per-round differences: each pair ran back to back, so it is the
                    # figure least moved by drift on a shared machine.
                    "non_stream_paired_median_ms": paired(series["gateway"], series["direct"]),
                    "stream_paired_median_ms": paired(series["gateway_stream"], series["direct"])}
    return out


def upstream_traffic(gateway: str, standin: str, n: int) -> dict[str, float]:
    """What one completion costs the upstream, from the stand-in's counters: calls, cancels, new connections."""
    before = standin_stats(standin)
    for i in range(n):
        latency.ThroughGateway(gateway, "bench-standin", "bench", stream=bool(i % 2))()
    after = standin_stats(standin)
    return {key: round((after[key] - before[key]) / n, 3) for key in ("calls", "cancels", "connections")}


def paired(a: latency.Series, b: latency.Series) -> float | None:
    if a.errors or b.errors or not a.samples:
        return None
    diffs = [x - y for x, y in zip(a.totals(), b.totals())]
    return round((latency.percentile(diffs, 50) or 0) * 1000, 3)


def loadgen(*argv: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.loadgen", *argv], cwd=procs.ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_load(gw: procs.Gateway, model: str, args: argparse.Namespace, stream_chunks: int | None,
                 label: str = "gateway", duration: float | None = None) -> dict[str, Any]:
    """Throughput from a separate process, and the gateway's CPU per request during it."""
    duration = duration or args.duration
    extra = ["--stream", "--message", f"chunks={stream_chunks} bench"] if stream_chunks else []
    concurrency = args.concurrency if not stream_chunks else max(2, args.concurrency // 2)
    spy = None
    if args.profile:
        kind = f"stream-{stream_chunks}" if stream_chunks else "non-stream"
        name = f"profile-{label}-{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"
        spy_out = RESULTS / name
        RESULTS.mkdir(parents=True, exist_ok=True)
        spy = profile.start(gw.proc.pid, max(1, duration - 1), spy_out)
    cpu0, wall0 = gw.cpu(), time.monotonic()
    result = loadgen("throughput", "--url", gw.url, "--model", model, "--concurrency", str(concurrency),
                     "--duration", str(duration), *extra, timeout=duration + 60)
    cpu = gw.cpu() - cpu0
    if spy is not None:
        spy.wait(60)
        if spy_out.exists():
            result["profile"] = str(spy_out)
            print(profile.summary(spy_out), flush=True)
    result["gateway_cpu_s"] = round(cpu, 3)
    result["wall_s"] = time.monotonic() - wall0
    return result


def measure_loads(gw: procs.Gateway, floor: procs.Gateway, model: str,
                  args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The gateway's and the floor's load runs, alternating in short pieces (ABBA), so that drift
    on a shared machine falls on both alike: non-stream, then 50-chunk streams, each round."""
    rounds = 1 if args.smoke else 4
    pieces: dict[str, list[dict[str, Any]]] = {}
    for i in range(rounds):
        order = ((gw, "gateway"), (floor, "floor")) if i % 2 == 0 else ((floor, "floor"), (gw, "gateway"))
        for chunks in (None, 50):
            for proc, label in order:
                pieces.setdefault(LOAD_KEYS[label, chunks], []).append(
                    measure_load(proc, model, args, chunks, label, duration=args.duration / rounds))
    return {key: combine(runs) for key, runs in pieces.items()}


def combine(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """One load figure from its pieces: requests, errors and CPU summed; the load generator's
    latencies as the median of the pieces' p50s and the largest p99."""
    requests_ = sum(p["requests"] for p in pieces)
    cpu = sum(p["gateway_cpu_s"] for p in pieces)
    elapsed = sum(p["elapsed_s"] for p in pieces)
    kinds: dict[str, int] = {}
    for p in pieces:
        for kind, n in p["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    return {"stream": pieces[0]["stream"], "concurrency": pieces[0]["concurrency"], "pieces": pieces,
            "elapsed_s": elapsed, "requests": requests_, "errors": sum(kinds.values()), "error_kinds": kinds,
            "rps": requests_ / elapsed if elapsed else 0.0,
            "latency_ms_p50": latency.percentile([p["latency_ms_p50"] for p in pieces], 50),
            "latency_ms_p99": max(p["latency_ms_p99"] for p in pieces),
            "gateway_cpu_s": round(cpu, 3),
            "gateway_cpu_ms_per_request": round(cpu * 1000 / requests_, 3) if requests_ else None,
            "gateway_cpu_cores_busy": round(cpu / sum(p["wall_s"] for p in pieces), 2)}


def release(standin: str) -> None:
    """Let held jobs finish; a stand-in busy finishing thousands of them may answer late."""
    try:
        requests.post(standin + "bench/release", timeout=30)
    except requests.RequestException:
        pass


def standin_stats(standin: str) -> dict[str, Any]:
    return requests.get(standin + "bench/stats", timeout=30).json()


def measure_capacity(models_file: Path, standin: str, args: argparse.Namespace) -> dict[str, Any]:
    """Ascending levels of concurrent open streams on a fresh gateway, until one shows an error."""
    top = max(args.levels)
    gw = procs.start_gateway(models_file, args.workers, worker_connections=max(10000, top + 100))
    levels: list[dict[str, Any]] = []
    try:
        for stream in (False, True) * 10:   # warm every worker: imports, pools, the app cache
            latency.ThroughGateway(gw.url, "bench-standin", "bench", stream)()
        time.sleep(0.5)
        base = gw.memory()
        for n in args.levels:
            level = hold_level(gw, standin, n, base)
            levels.append(level)
            if level["errors"] or level["held"] < n:
                break
    finally:
        gw.stop()
    ok = [lv for lv in levels if not lv["errors"] and lv["held"] == lv["streams"]]
    best = ok[-1] if ok else None
    return {"workers": args.workers, "baseline": base, "levels": levels,
            "max_streams_zero_errors": best["streams"] if best else 0,
            "at_max": best, "tried_up_to": top}


def hold_level(gw: procs.Gateway, standin: str, n: int, base: dict[str, int]) -> dict[str, Any]:
    deadline = 60 + n / 20
    gen = subprocess.Popen([sys.executable, "-m", "bench.loadgen", "hold", "--url", gw.url, "--model",
                            "bench-standin", "--streams", str(n), "--deadline", str(deadline)],
                           cwd=procs.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert gen.stdout is not None
        held = json.loads(gen.stdout.readline() or "{}")
        mem = gw.memory()
        upstream_open = standin_stats(standin)["streams_open"]
        end = time.monotonic() + deadline + 30
        while gen.poll() is None and time.monotonic() < end:
            release(standin)
            try:
                gen.wait(1)
            except subprocess.TimeoutExpired:
                pass
        out, err = gen.communicate(timeout=30)
        final = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"errors": n, "held": 0}
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    count = max(held.get("open", 0), 1)
    level = {"streams": n, "held": held.get("open", 0), "open_s": round(held.get("open_s", 0), 2),
             "upstream_streams_open": upstream_open, "completed": final.get("completed", 0),
             "errors": final.get("errors", n), "error_kinds": final.get("error_kinds", {}),
             "rss_kib": mem["rss_kib"], "pss_kib": mem["pss_kib"],
             "rss_per_stream_kib": round((mem["rss_kib"] - base["rss_kib"]) / count, 1),
             "pss_per_stream_kib": round((mem["pss_kib"] - base["pss_kib"]) / count, 1)}
    # Let the gateway wind the level down before the next one starts.
    end = time.monotonic() + 30
    while standin_stats(standin)["streams_open"] and time.monotonic() < end:
        time.sleep(0.2)
    print(f"  {n} streams: held {level['held']}, errors {level['errors']}, "
          f"PSS/stream {level['pss_per_stream_kib']} KiB", flush=True)
    return level


def run(args: argparse.Namespace) -> dict[str, Any]:
    procs.raise_nofile()
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "smoke": args.smoke, "machine": machine(), "load_before": procs.load_average()}
    started: list[Any] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        standin_proc, standin = procs.start_standin(chunks=8)
        started.append(standin_proc)
        first_app = len(started)
        apps = start_apps(tmp, args, started)
        app_procs = started[first_app:]
        if apps.gen_urls or apps.skipped:
            results["generations"] = {"skipped": apps.skipped}
        models_file = tmp / "models.yaml"
        extra = generations.models(apps.gen_urls)
        if apps.tls_url:
            extra["bench-gradio-tls"] = {"space": apps.tls_url, "api_name": "/chat"}
        write_models(models_file, standin, apps.url, extra)
        # The gateway trusts the throwaway CA the way an operator would make it trust a private one.
        ca_env = {"REQUESTS_CA_BUNDLE": str(apps.tls.ca), "SSL_CERT_FILE": str(apps.tls.ca)} if apps.tls else {}
        gw = procs.start_gateway(models_file, args.workers, worker_connections=10000, extra_env=ca_env)
        started.append(gw)
        floor = procs.start_gateway(models_file, args.workers, worker_connections=10000, app="bench.floor:app")
        started.append(floor)

        say("latency (concurrency 1) against the stand-in ...")
        results["latency_standin"] = measure_latency(gw.url, standin, "bench-standin", args.rounds, False)
        results["client_cpu_per_call"] = latency.client_cpu_per_call(standin, 20 if args.smoke else 500)
        results["upstream_per_completion"] = upstream_traffic(gw.url, standin, 10 if args.smoke else 200)
        measure_gradio(results, gw, apps, args)
        for proc in app_procs:      # done with: the load and capacity runs get the machine without them
            proc.stop()
            started.remove(proc)
        say("CPU per request and throughput, gateway and floor alternating ...")
        results.update(measure_loads(gw, floor, "bench-standin", args))
        for proc in (floor, gw):
            proc.stop()
            started.remove(proc)
        say("concurrent open streams ...")
        results["capacity"] = measure_capacity(models_file, standin, args)
        results["standin_stats"] = standin_stats(standin)
    finally:
        for proc in reversed(started):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = procs.load_average()
    results["uptime_after"] = uptime()
    results["ratios"] = ratios.compute(results)
    return results


@dataclass
class Apps:
    """The Gradio apps a run measures: the real one, over HTTP and HTTPS, and one per generation."""
    url: str | None = None
    tls_url: str | None = None
    tls: tlsca.Files | None = None
    counts: dict[str, Path] = field(default_factory=dict)      # app -> its count of accepted connections
    gen_urls: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def start_apps(tmp: Path, args: argparse.Namespace, started: list[Any]) -> Apps:
    """Launch the real app (HTTP and HTTPS) and the generations' apps together, then wait for all."""
    apps = Apps()
    if args.no_gradio:
        return apps
    apps.counts["gradio"] = tmp / "gradio.connections"
    proc, apps.url = procs.launch_real_app(apps.counts["gradio"])
    started.append(proc)
    waiting = [(proc, apps.url, None)]
    if not args.no_tls:
        apps.tls = tlsca.make(tmp)
        apps.counts["gradio_tls"] = tmp / "gradio-tls.connections"
        proc, apps.tls_url = procs.launch_real_app(apps.counts["gradio_tls"], apps.tls)
        started.append(proc)
        waiting.append((proc, apps.tls_url, apps.tls))
    if not args.no_generations:
        say("starting one chat app per Gradio generation ...")
        gen_procs, apps.gen_urls, apps.skipped = generations.start(tmp, args.smoke)
        started.extend(_Stopper(p) for p in gen_procs.values())
        apps.counts.update({f"gen-{v}": generations.count_file(tmp, v) for v in apps.gen_urls})
    for proc, url, tls in waiting:
        procs.wait_real_app(proc, url, tls)
    return apps


def measure_gradio(results: dict[str, Any], gw: procs.Gateway, apps: Apps, args: argparse.Namespace) -> None:
    """Latency and reconnects against the real Gradio app (HTTP, then HTTPS) and each generation."""
    n, warmup = (6, 4) if args.smoke else (200, 20)
    if apps.url:
        say("latency (concurrency 1) against the real Gradio app, and gradio_client ...")
        results["latency_gradio"] = measure_latency(gw.url, apps.url, "bench-gradio", max(5, args.rounds // 3), True)
        say("reconnects per completion, real Gradio ...")
        results["reconnects_gradio"] = reconnects.per_completion(gw.url, "bench-gradio", apps.counts["gradio"],
                                                                 n, warmup)
    if apps.tls_url and apps.tls:
        say("latency and reconnects against the real Gradio app over TLS ...")
        results["latency_gradio_tls"] = measure_latency(gw.url, apps.tls_url, "bench-gradio-tls",
                                                        max(5, args.rounds // 3), False, verify=str(apps.tls.ca))
        results["reconnects_gradio_tls"] = reconnects.per_completion(
            gw.url, "bench-gradio-tls", apps.counts["gradio_tls"], n, warmup)
    if apps.gen_urls:
        say("latency and reconnects per Gradio generation ...")
        counts = {version: apps.counts[f"gen-{version}"] for version in apps.gen_urls}
        measured, reconnected = generations.measure(gw.url, apps.gen_urls, 5 if args.smoke else 30, counts)
        for version, figures in measured.items():
            figures["protocol"] = _speaks(apps.gen_urls[version])
        results["generations"]["measured"] = measured
        results["generations"]["reconnects"] = reconnected


class _Stopper:
    """A generation's app process, stopped with the others."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    def stop(self) -> None:
        generations.stop({"": self.proc})


def _speaks(app_url: str) -> str:
    """The protocol the gateway speaks to the app, from its /config as the gateway reads it."""
    from gateway.upstream.apps import PROTOCOL_TEXT, family, version_tuple   # noqa: PLC0415
    try:
        config = requests.get(app_url + "config", timeout=10).json()
        return PROTOCOL_TEXT[family(config, version_tuple(str(config.get("version", ""))))]
    except (requests.RequestException, ValueError, KeyError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    out = args.out or RESULTS / f"{'smoke' if args.smoke else 'bench'}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(render_table(results))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
