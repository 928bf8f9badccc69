"""One venv per Gradio generation, from the lock files beside this module, cached outside the clone.

    python -m tests.generations.venvs [--all | VERSION ...]   build (or find) the venvs, print their paths
    python -m tests.generations.venvs --lock [VERSION ...]    re-resolve the lock files (uv pip compile)

A venv lives at ``${GCG_VENV_CACHE:-~/.cache/gradio-chat-gateway/venvs}/<version>-<hash12>``, where hash12
is the start of the SHA-256 of its lock file: a changed lock file is a new venv, and an old one is never
patched in place. A venv is built in a temporary directory beside its final place and renamed when
complete, so an interrupted build is never reused; missing venvs are built in parallel.

Gradio 6.31.0 is the project's own: requirements-dev.txt pins it, so it runs in the interpreter the
tests run in (``sys.executable``) and has no venv or lock file here.

The lock files are resolved "as of the release": ``uv pip compile --exclude-newer`` a week after the
Gradio release, so every companion package (fastapi, starlette, pydantic, huggingface_hub, httpx ...)
is the one a Space built that week got. For 3.50.2 the pins of ../shared/UPSTREAM-NOTES.md (verified on
a real server) override what the date alone gives.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCKS = HERE / "locks"

# Gradio version -> the --exclude-newer date its lock file was resolved with (a week after its release).
VERSIONS: dict[str, str] = {
    "3.50.2": "2023-10-26",   # released 2023-10-19
    "4.8.0": "2023-12-14",    # a release of the first SSE queue (protocol "sse", 4.0-4.8)
    "4.19.2": "2024-02-29",   # 2024-02-22: the last release before /call
    "4.20.1": "2024-03-13",   # 2024-03-06: /call at the root
    "4.44.1": "2024-10-07",   # 2024-09-30: the last 4.x
    "5.50.0": "2025-11-28",   # 2025-11-21: the last 5.x
    "6.17.3": "2026-06-11",   # 2026-06-07: the newest 6.x before 6.18 (6.18.0: 2026-06-11 23:57)
}
# The project's own Gradio (requirements-dev.txt): no venv of its own.
OWN = "6.31.0"
ALL = [*VERSIONS, OWN]

# Pins that override the date's resolution (UPSTREAM-NOTES.md, "Gradio generations").
OVERRIDES: dict[str, list[str]] = {
    "3.50.2": ["gradio-client==0.6.1", "fastapi==0.104.1", "starlette==0.27.0", "pydantic==2.4.2",
               "huggingface-hub==0.18.0", "httpx==0.25.0", "uvicorn==0.23.2", "websockets==11.0.3",
               "python-multipart==0.0.6", "numpy==1.26.4"],
}

# The cutoff of the overriding pins themselves (they were verified later than their Gradio's week).
OVERRIDE_CUTOFF = "2026-12-01"

PYTHON_VERSION = "3.11"

# What every process of these venvs runs with: nothing may reach the internet.
RUN_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "GRADIO_SERVER_NAME": "127.0.0.1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def cache_root() -> Path:
    default = Path.home() / ".cache" / "gradio-chat-gateway" / "venvs"
    return Path(os.environ.get("GCG_VENV_CACHE") or default)


def lock_path(version: str) -> Path:
    return LOCKS / f"gradio-{version}.txt"


def lock_hash(version: str) -> str:
    return hashlib.sha256(lock_path(version).read_bytes()).hexdigest()[:12]


def venv_dir(version: str) -> Path:
    return cache_root() / f"{version}-{lock_hash(version)}"


def python_of(version: str) -> Path:
    """The interpreter that serves this version's apps (built or not: see ensure())."""
    if version == OWN:
        return Path(sys.executable)
    return venv_dir(version) / "bin" / "python"


def uv() -> str:
    """The uv of this interpreter's environment (requirements-dev.txt pins it), else one on PATH."""
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found: `make install-dev` installs it (requirements-dev.txt)")
    return found


def base_python() -> str:
    """A plain CPython 3.11 to base the venvs on (never one uv would download)."""
    for candidate in (getattr(sys, "_base_executable", None), shutil.which(f"python{PYTHON_VERSION}"),
                      f"/usr/bin/python{PYTHON_VERSION}"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError(f"no python{PYTHON_VERSION} found to base the Gradio venvs on")


def uv_env() -> dict[str, str]:
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


def _log(msg: str) -> None:
    print(f"[gradio venvs] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _build_lock(version: str):
    """One builder per venv on this machine (parallel pytest runs, CI and a developer alike)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{version}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_built(version: str) -> bool:
    return version == OWN or (venv_dir(version) / ".complete").exists()


def ensure(version: str) -> Path:
    """The python of a complete venv for this Gradio version, building it first when missing."""
    if version == OWN:
        return Path(sys.executable)
    if version not in VERSIONS:
        raise ValueError(f"unknown Gradio version {version!r}; known: {', '.join(ALL)}")
    final = venv_dir(version)
    if (final / ".complete").exists():
        return final / "bin" / "python"
    with _build_lock(version):
        if (final / ".complete").exists():
            return final / "bin" / "python"
        _sweep(version)
        started = time.monotonic()
        _log(f"building gradio {version} in {final} ...")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=final.parent))
        try:
            venv = tmp / "venv"
            subprocess.run([uv(), "venv", "-q", "--relocatable", "--python", base_python(), str(venv)],
                           check=True, env=uv_env(), stdout=subprocess.DEVNULL)
            # sync: exactly the lock file, nothing more, nothing resolved again. No --compile-bytecode:
            # it compiled every file of every package (minutes on 2 busy cores); the import check below
            # compiles what the apps import, once.
            out = subprocess.run([uv(), "pip", "sync", "-q", "--python", str(venv / "bin" / "python"),
                                  str(lock_path(version))],
                                 env=uv_env(), capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"installing gradio {version} failed:\n{out.stdout}{out.stderr}")
            check = subprocess.run([str(venv / "bin" / "python"), "-c",
                                    "import gradio, sys; sys.stdout.write(gradio.__version__)"],
                                   env={**os.environ, **RUN_ENV}, capture_output=True, text=True)
            if check.returncode or check.stdout.strip() != version:
                raise RuntimeError(f"gradio {version} does not import in its venv:\n{check.stderr[-3000:]}")
            (venv / ".complete").write_text(f"{lock_hash(version)}\n")
            os.rename(venv, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _log(f"built gradio {version} in {time.monotonic() - started:.0f} s")
    return final / "bin" / "python"


def _sweep(version: str) -> None:
    """Remove this version's half-built leftovers and a stale final dir without its marker."""
    root = cache_root()
    for leftover in root.glob(f".tmp-{version}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    final = venv_dir(version)
    if final.exists() and not (final / ".complete").exists():
        shutil.rmtree(final, ignore_errors=True)


def ensure_all(versions: list[str], jobs: int | None = None) -> dict[str, Path]:
    """Build every missing venv of versions, several at once; version -> python."""
    missing = [v for v in versions if not is_built(v)]
    if missing:
        _log(f"{len(missing)} to build: {', '.join(missing)} (cache {cache_root()})")
    started = time.monotonic()
    pythons: dict[str, Path] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or max(1, len(missing))) as pool:
        futures = {v: pool.submit(ensure, v) for v in missing}
        pending = set(futures.values())
        while pending:      # no silent multi-minute installs: say what is still building
            _, pending = concurrent.futures.wait(pending, timeout=15)
            if pending:
                still = [v for v, f in futures.items() if f in pending]
                _log(f"still building {', '.join(still)} ({time.monotonic() - started:.0f} s)")
        for version in versions:
            pythons[version] = futures[version].result() if version in futures else ensure(version)
    if missing:
        _log(f"all built in {time.monotonic() - started:.0f} s")
    return pythons


def lock(version: str) -> None:
    """Resolve a lock file as of its release date (needs the package index)."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text(f"gradio=={version}\n")
        cmd = [uv(), "pip", "compile", "-q", "--python-version", PYTHON_VERSION,
               "--exclude-newer", VERSIONS[version], "--custom-compile-command",
               f"python -m tests.generations.venvs --lock {version}", str(req), "-o", str(lock_path(version))]
        if version in OVERRIDES:
            overrides = Path(tmp) / "overrides.txt"
            overrides.write_text("\n".join(OVERRIDES[version]) + "\n")
            cmd[3:3] = ["--override", str(overrides)]
            for pin in OVERRIDES[version]:   # the date's cutoff would hide a pin published later
                cmd[3:3] = ["--exclude-newer-package", f"{pin.split('==')[0]}={OVERRIDE_CUTOFF}"]
        LOCKS.mkdir(exist_ok=True)
        subprocess.run(cmd, check=True, env=uv_env())
    # The temp paths uv writes into the annotations change every run: keep the file stable.
    text = lock_path(version).read_text()
    lock_path(version).write_text("".join(line for line in text.splitlines(keepends=True)
                                          if "/tmp" not in line or not line.lstrip().startswith("#")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help=f"Gradio versions ({', '.join(ALL)})")
    parser.add_argument("--all", action="store_true", help="every version")
    parser.add_argument("--lock", action="store_true", help="re-resolve the lock files instead")
    args = parser.parse_args(argv)
    versions = list(ALL) if args.all or not args.versions else args.versions
    if args.lock:
        for version in versions:
            if version != OWN:
                lock(version)
                _log(f"locked {lock_path(version)}")
        return 0
    for version, python in ensure_all(versions).items():
        print(f"{version}\t{python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
