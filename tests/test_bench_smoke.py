"""The bench entry at tiny sizes, so it cannot rot. It checks that every figure is produced, never a timing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_bench_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())

    for key in ("latency_standin", "latency_gradio"):
        latency = results[key]
        for variant in ("direct", "gateway", "gateway_stream"):
            assert latency[variant]["errors"] == 0 and latency[variant]["n"] > 0, (key, variant)
        assert latency["gateway_stream"]["ttft_p50_ms"] is not None
        assert set(latency["added"]) >= {"non_stream_p50_ms", "stream_p50_ms", "ttft_p50_ms"}
    assert results["latency_gradio"]["gradio_client"]["n"] > 0

    for key in ("load_non_stream", "load_stream_50", "load_floor", "load_floor_stream_50"):
        load = results[key]
        assert load["requests"] > 0 and load["errors"] == 0, load
        assert load["gateway_cpu_ms_per_request"] is not None

    # Over HTTPS the direct client must verify the throwaway CA's certificate; whether the gateway
    # can trust it is a figure (the TLS rows), not the harness.
    tls = results["latency_gradio_tls"]
    assert tls["direct"]["errors"] == 0 and tls["direct"]["n"] > 0, tls["direct"]
    for key in ("reconnects_gradio", "reconnects_gradio_tls"):
        assert results[key]["completions"] > 0, results[key]
    assert results["reconnects_gradio"]["errors"] == 0, results["reconnects_gradio"]
    assert results["generations"]["reconnects"], results["generations"]
    names = [t["name"] for t in results["ratios"]]
    for part in ("CPU per non-stream request", "CPU per 50-chunk stream", "(real Gradio)",
                 "(real Gradio over TLS)", "reconnects per completion (Gradio", "memory per open stream",
                 "open streams"):
        assert any(part in name for name in names), (part, names)

    capacity = results["capacity"]
    assert capacity["levels"][0]["errors"] == 0, capacity
    assert capacity["max_streams_zero_errors"] == capacity["tried_up_to"]
    assert capacity["at_max"]["pss_per_stream_kib"] is not None
    assert "| figure" in done.stdout and "load average" in done.stdout and "RATIOS" in done.stdout
