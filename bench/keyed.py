"""What a gateway key with limits costs per request: unkeyed vs keyed and limited, with local
state and with Redis, measured side by side in one run (BENCHMARKS.md, "Keys and limits").

    python -m bench.keyed [--rounds 300]

Three gateways (gunicorn, one gevent worker each) in front of the same stand-in app:
  open   no KEYS_FILE, no REDIS_URL: the unkeyed request
  local  KEYS_FILE with a key limited in requests/minute, concurrent streams and tokens/day
  redis  the same, with REDIS_URL (a redis-server this run starts on a free port)
Requests go round-robin over the three in a shuffled order each round (so drift in the machine's
load hits all alike); each gets its own keep-alive session. Reported: median and p90 latency
per request, the worker's CPU seconds per request, and both as ratios to `open`.
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from .procs import Proc, children, cpu_seconds, free_port, load_average, start_standin

KEY = "sk-bench-limited-0123456789"
BIG = 1_000_000_000          # limits that never refuse: only their cost is measured


def start_redis() -> tuple[Proc, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    proc = Proc("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    end = time.monotonic() + 15
    import redis
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            if time.monotonic() > end:
                proc.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)


def start(name: str, env: dict[str, str]) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                {"LISTEN": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1", "BUILTIN_MODELS": "false",
                 "LOG_LEVEL": "warning", **env})
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(url + "/healthz")
    return proc, url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-keyed-"))
    procs: list[Proc] = []
    try:
        standin, app_url = start_standin(chunks=1)
        procs.append(standin)
        redis_proc, redis_url = start_redis()
        procs.append(redis_proc)
        (tmp / "models.yaml").write_text(yaml.safe_dump({"models": {"m": {"space": app_url}}}))
        (tmp / "keys.yaml").write_text(yaml.safe_dump({"keys": [{
            "name": "bench", "key": KEY, "requests_per_minute": BIG, "concurrent_streams": 10_000,
            "tokens_per_day": BIG}]}))
        base = {"MODELS_FILE": str(tmp / "models.yaml")}
        keyed = {**base, "KEYS_FILE": str(tmp / "keys.yaml")}
        gateways: dict[str, str] = {}
        for name, env in (("open", base), ("local", keyed), ("redis", {**keyed, "REDIS_URL": redis_url})):
            proc, url = start(name, env)
            procs.append(proc)
            gateways[name] = url
        pids = {name: children(p.pid) for name, p in zip(gateways, procs[2:])}
        sessions = {name: requests.Session() for name in gateways}
        body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}

        def ask(name: str) -> float:
            headers = {} if name == "open" else {"Authorization": f"Bearer {KEY}"}
            started = time.perf_counter()
            resp = sessions[name].post(gateways[name] + "/v1/chat/completions", json=body, headers=headers, timeout=30)
            elapsed = time.perf_counter() - started
            if resp.status_code != 200:
                raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:300]}")
            return elapsed

        for name in gateways:                       # warm: metadata cached, scripts loaded
            for _ in range(10):
                ask(name)
        load_before = load_average()
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        times: dict[str, list[float]] = {name: [] for name in gateways}
        order = list(gateways)
        for _ in range(args.rounds):
            random.shuffle(order)
            for name in order:
                times[name].append(ask(name))
        cpu = {name: (cpu_seconds(p) - cpu_before[name]) / args.rounds for name, p in pids.items()}
        report(times, cpu, args.rounds, load_before, load_average())
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(times: dict[str, list[float]], cpu: dict[str, float], rounds: int,
           load_before: list[float], load_after: list[float]) -> None:
    med = {n: statistics.median(t) for n, t in times.items()}
    p90 = {n: statistics.quantiles(t, n=10)[-1] for n, t in times.items()}
    print(f"{rounds} rounds; load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'gateway':<8}{'median ms':>10}{'p90 ms':>9}{'CPU ms/req':>12}{'median x':>10}{'CPU x':>8}")
    for name in times:
        print(f"{name:<8}{med[name] * 1000:>10.2f}{p90[name] * 1000:>9.2f}{cpu[name] * 1000:>12.2f}"
              f"{med[name] / med['open']:>10.2f}{cpu[name] / cpu['open']:>8.2f}")


if __name__ == "__main__":
    main()
