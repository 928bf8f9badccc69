"""`python -m bench --profile`: py-spy on the gunicorn workers during the load runs.

Writes collapsed stacks (flamegraph.pl / speedscope read them) to bench/results/ and
prints the functions that hold the most samples, inclusive and self.
"""
from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

FRAME_LINE = re.compile(r":\d+\)")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[str] | None:
    """py-spy record on pid and its children (the workers), for `seconds`; None when py-spy is missing."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("  (py-spy is not installed: pip install -r requirements-dev.txt)", flush=True)
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
                             "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def summary(collapsed: Path, top: int = 15) -> str:
    """The top functions by inclusive and by self samples, as text."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [FRAME_LINE.sub(")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples; inclusive:"]
    lines += [f"  {100 * n / total:5.1f}% {f}" for f, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}% {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)
