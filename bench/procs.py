"""Processes the bench starts (gateway, stand-in, real Gradio app) and what /proc says about them."""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from . import tlsca

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(wanted: int = 65536) -> int:
    """Raise this process's open-files soft limit as far as the hard limit allows; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of pid (gunicorn's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    """user+sys CPU seconds of these processes (utime+stime from /proc/<pid>/stat)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def memory_kib(pids: list[int]) -> dict[str, int]:
    """RSS and PSS (KiB) summed over these processes, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"rss_kib": rss, "pss_kib": pss}


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class Proc:
    """A child process with its output in a log file; stopped by pid, never by name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                                     stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def wait_http(self, url: str, deadline: float = 60.0, verify: bool | str = True) -> None:
        """Wait for a 200 from url; on failure stop the process (and drop its log) before raising."""
        try:
            self._wait_http(url, deadline, verify)
        except BaseException:
            self.stop()
            raise

    def _wait_http(self, url: str, deadline: float, verify: bool | str) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if requests.get(url, timeout=2, verify=verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready at {url}:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:      # stopping twice (a failed wait, then the run's cleanup) is fine
            self.log.close()
            os.unlink(self.log.name)


def start_standin(chunks: int = 8, delay: float = 0.0) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("standin", [sys.executable, "-m", "bench.standin", "--port", str(port),
                            "--chunks", str(chunks), "--delay", str(delay)])
    url = f"http://127.0.0.1:{port}/"
    proc.wait_http(url + "config")
    return proc, url


def start_real_app(count_file: Path | None = None, tls: tlsca.Files | None = None) -> tuple[Proc, str]:
    """tests/gradio_apps.py's streaming echo ChatInterface, in its own process; over HTTPS with tls,
    counting the connections it accepts into count_file if given (bench/conncount.py)."""
    proc, url = launch_real_app(count_file, tls)
    wait_real_app(proc, url, tls)
    return proc, url


def launch_real_app(count_file: Path | None = None, tls: tlsca.Files | None = None) -> tuple[Proc, str]:
    """start_real_app without waiting: apps launched together start in parallel."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.realapp", "--port", str(port)]
    if count_file:
        argv += ["--count-file", str(count_file)]
    if tls:
        argv += ["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    proc = Proc("gradio-tls" if tls else "gradio", argv,
                {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"})
    return proc, f"{'https' if tls else 'http'}://127.0.0.1:{port}/"


def wait_real_app(proc: Proc, url: str, tls: tlsca.Files | None = None) -> None:
    proc.wait_http(url + "config", deadline=120, verify=str(tls.ca) if tls else True)


@dataclass
class Gateway:
    proc: Proc
    url: str

    @property
    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        return [self.proc.pid, *children(self.proc.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def memory(self) -> dict[str, int]:
        return memory_kib(self.pids)

    def stop(self) -> None:
        self.proc.stop()


def start_gateway(models_file: Path, workers: int, worker_connections: int, app: str = "wsgi:app",
                  extra_env: dict[str, str] | None = None, root: Path = ROOT) -> Gateway:
    """`gunicorn -c gunicorn.conf.py wsgi:app` as `make serve` runs it, on a free loopback port;
    the build at `root` (its code first on PYTHONPATH, its gunicorn.conf.py) when that is another."""
    port = free_port()
    env = {"LISTEN": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(workers),
           "WORKER_CONNECTIONS": str(worker_connections), "MODELS_FILE": str(models_file),
           "BUILTIN_MODELS": "false", "LOG_LEVEL": "warning", "SSE_KEEPALIVE": "15",
           "UPSTREAM_IDLE_TIMEOUT": "120", "UPSTREAM_TOTAL_TIMEOUT": "600", **(extra_env or {})}
    if root != ROOT:
        env["PYTHONPATH"] = str(root)
    proc = Proc("gateway", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app], env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(url + "/healthz")
    # Every worker should be up before anything is measured.
    end = time.monotonic() + 30
    while len(children(proc.pid)) < workers and time.monotonic() < end:
        time.sleep(0.1)
    return Gateway(proc, url)
