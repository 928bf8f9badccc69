"""/healthz measured from a process of its own while an attack runs through a live worker.

The stand-in apps of the tests run in the test process; a probe thread there would share its
GIL with an app sending megabytes, and measure the test process instead of the gateway.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HEALTHY = 1.0             # seconds: /healthz must answer within this throughout an attack


PROBE_SCRIPT = r"""
import json, sys, threading, time, urllib.request
url, stop, latencies, failures = sys.argv[1], threading.Event(), [], []
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print("ready", flush=True)
while True:                             # at least one ask, however short the block
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            status = resp.status
    except Exception as exc:            # refused, reset, timed out, or a 4xx/5xx (HTTPError)
        status = f"{type(exc).__name__}: {exc}"
    latencies.append(time.monotonic() - started)
    if status != 200:
        failures.append(str(status))
    if stop.wait(0.05):
        break
print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
"""


class HealthProbe:
    """Asks /healthz on a fresh connection every 50 ms while the block runs; `worst` is the
    slowest answer (no answer within 10 s counts as 10 s), `failures` every answer that was not
    a 200 (a refused connection or a 503 comes back fast, and is no sign of health). It runs in its own process, so that
    the stand-in app, which shares this process, cannot slow the measurement down."""

    def __init__(self, url: str) -> None:
        self.url = url + "/healthz"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)

    @property
    def healthy(self) -> bool:
        """Every answer a 200, and the worst within HEALTHY seconds, stretched by how oversubscribed the machine
        was when the attack began (load average per core, at most 5x): 1 s on a machine with a core to
        spare; on a shared machine running others' suites, a worker that gets a sixth of a core
        takes six times as long for the same work, blocking or not."""
        return not self.failures and bool(self.latencies) and self.worst < HEALTHY * self.stretch

    def verdict(self) -> str:
        """Why `healthy` is what it is, for an assertion's message."""
        failed = f"; {len(self.failures)} failed: {self.failures[:3]}" if self.failures else ""
        return (f"/healthz worst {self.worst:.2f} s over {len(self.latencies)} asks "
                f"(bound {HEALTHY * self.stretch:.1f} s){failed}")

    def __enter__(self) -> "HealthProbe":
        self.stretch = min(5.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))
        self._proc = subprocess.Popen([sys.executable, "-c", PROBE_SCRIPT, self.url], text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None and self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate("stop\n", timeout=30)
        found = json.loads(out.strip() or '{"latencies": [], "failures": ["the probe said nothing"]}')
        self.latencies, self.failures = found["latencies"], found["failures"]
