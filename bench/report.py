"""The results as a table: issue 16's ratios with their targets first, then the absolute figures (issue 6)."""
from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _check(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


Row = tuple[str, str, str, str]      # figure, value, target, met?


def rows(r: dict[str, Any]) -> list[Row]:
    absolute = _latency_rows(r) + _generation_rows(r) + _load_rows(r) + _capacity_rows(r)
    if not r.get("ratios"):
        return absolute
    return [("RATIOS, measured side by side in this run (issue 16)", "", "", ""), *_ratio_rows(r),
            ("ABSOLUTE FIGURES (targets of issue 6)", "", "", ""), *absolute]


def _ratio_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for t in r["ratios"]:
        value = "n/a" if t["value"] is None else f"{t['value']:g}"
        out.append((t["name"], f"{value} ({t['detail']})" if t["detail"] else value,
                    f"{t['op']} {t['target']:g}", _check(t["met"]) or "NO FIGURE"))
    return out


def _generation_rows(r: dict[str, Any]) -> list[Row]:
    """One row per Gradio generation: the same streaming chat through the gateway (bench/generations.py)."""
    out: list[Row] = []
    gens = r.get("generations") or {}
    for version, g in (gens.get("measured") or {}).items():
        out.append((f"Gradio {version} ({g.get('protocol', '?')}): p50 non-stream / stream / TTFT",
                    f"{_ms(g['non_stream_p50_ms'])} / {_ms(g['stream_p50_ms'])} / {_ms(g['ttft_p50_ms'])}"
                    f", {g['errors']} errors", "0 errors", _check(g["errors"] == 0)))
    for version in gens.get("skipped") or []:
        out.append((f"Gradio {version}", "skipped: venv not built (make venvs)", "", ""))
    return out


def _latency_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for key, label in (("latency_standin", "stand-in"), ("latency_gradio", "real Gradio"),
                       ("latency_gradio_tls", "real Gradio, TLS")):
        lat = r.get(key)
        if not lat:
            continue
        a = lat["added"]
        d = lat["direct"]
        out += [
            (f"added latency p50, non-stream ({label})", _ms(a["non_stream_p50_ms"]), "<= 1.5 ms",
             _check(a["non_stream_p50_ms"] is not None and a["non_stream_p50_ms"] <= 1.5)),
            (f"added latency p99, non-stream ({label})", _ms(a["non_stream_p99_ms"]), "", ""),
            (f"  median of paired differences, non-stream / stream ({label})",
             f"{_ms(a.get('non_stream_paired_median_ms'))} / {_ms(a.get('stream_paired_median_ms'))}", "", ""),
            (f"added latency p50, stream ({label})", _ms(a["stream_p50_ms"]), "<= 1.5 ms",
             _check(a["stream_p50_ms"] is not None and a["stream_p50_ms"] <= 1.5)),
            (f"added latency p99, stream ({label})", _ms(a["stream_p99_ms"]), "", ""),
            (f"added TTFT p50 / p99 ({label})", f"{_ms(a['ttft_p50_ms'])} / {_ms(a['ttft_p99_ms'])}", "", ""),
            (f"direct Gradio protocol p50 / p99 ({label})", f"{_ms(d['p50_ms'])} / {_ms(d['p99_ms'])}", "", ""),
        ]
        if "gradio_client" in lat:
            gc, gw, gs = lat["gradio_client"], lat["gateway"], lat["gateway_stream"]
            below = None if gc["p50_ms"] is None or gw["p50_ms"] is None else gw["p50_ms"] < gc["p50_ms"]
            out += [(f"gateway end-to-end p50 non-stream / stream ({label})",
                     f"{_ms(gw['p50_ms'])} / {_ms(gs['p50_ms'])}", "< gradio_client", _check(below)),
                    (f"gradio_client Client.predict p50 / p99 ({label})",
                     f"{_ms(gc['p50_ms'])} / {_ms(gc['p99_ms'])}", "", "")]
    return out


def _load_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    ns, st = r.get("load_non_stream"), r.get("load_stream_50")
    if ns:
        cpu = ns["gateway_cpu_ms_per_request"]
        out += [("gateway CPU per non-stream request", _ms(cpu), "<= 1 ms", _check(cpu is not None and cpu <= 1.0)),
                (f"throughput, non-stream (c={ns['concurrency']})",
                 f"{ns['rps']:.0f} req/s, {ns['errors']} errors", "", ""),
                ("  load-generator latency p50 / p99", f"{_ms(ns['latency_ms_p50'])} / {_ms(ns['latency_ms_p99'])}",
                 "", "")]
    if up := r.get("upstream_per_completion"):
        out += [("upstream per completion: calls / cancels / new connections",
                 f"{up['calls']:g} / {up['cancels']:g} / {up['connections']:g}", "", "")]
    if cc := r.get("client_cpu_per_call"):
        out += [("  one upstream POST, client CPU: requests / urllib3",
                 f"{_ms(cc['requests_cpu_ms'])} / {_ms(cc['urllib3_cpu_ms'])}", "", "")]
    if fl := r.get("load_floor"):
        out += [("  floor: gunicorn+gevent+Flask, canned answer", _ms(fl["gateway_cpu_ms_per_request"]), "",
                 f"{fl['rps']:.0f} req/s")]
    if fs := r.get("load_floor_stream_50"):
        out += [("  floor: gunicorn+gevent+Flask, canned 50-chunk stream", _ms(fs["gateway_cpu_ms_per_request"]),
                 "", f"{fs['rps']:.0f} req/s")]
    if st:
        out += [("gateway CPU per 50-chunk stream", _ms(st["gateway_cpu_ms_per_request"]), "", ""),
                (f"throughput, 50-chunk streams (c={st['concurrency']})",
                 f"{st['rps']:.0f} req/s, {st['errors']} errors", "", "")]
    return out


def _capacity_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    cap = r.get("capacity")
    if cap:
        best = cap["at_max"] or {}
        n = cap["max_streams_zero_errors"]
        per = best.get("pss_per_stream_kib")
        out += [(f"concurrent open streams, zero errors ({cap['workers']} workers)",
                 f"{n} (tried up to {cap['tried_up_to']})", ">= 2000", _check(n >= 2000)),
                ("memory per open stream, PSS / RSS",
                 "n/a" if per is None else f"{per:.1f} / {best['rss_per_stream_kib']:.1f} KiB", "<= 64 KiB",
                 _check(per is not None and per <= 64))]
    return out


def render_table(r: dict[str, Any]) -> str:
    table = rows(r)
    head = ("figure", "value", "target", "")
    widths = [max(len(str(row[i])) for row in [head, *table]) for i in range(4)]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, table)]
    m = r["machine"]
    out.append("")
    out.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Python {m['python']}")
    out.append(f"load average before {r['load_before']}, after {r.get('load_after')}")
    out.append(f"uptime before: {m.get('uptime')}")
    out.append(f"uptime after:  {r.get('uptime_after')}")
    git = m.get("git") or {}
    out.append(f"gateway commit {git.get('commit')}{' (gateway/ had uncommitted edits)' if git.get('gateway_dirty') else ''}")
    if cap := r.get("capacity"):
        for lv in cap["levels"]:
            out.append(f"  level {lv['streams']}: held {lv['held']} (upstream {lv['upstream_streams_open']}), "
                       f"completed {lv['completed']}, errors {lv['errors']} {lv['error_kinds'] or ''}, "
                       f"opened in {lv['open_s']} s, PSS/stream {lv['pss_per_stream_kib']} KiB, "
                       f"RSS/stream {lv['rss_per_stream_kib']} KiB")
    if r.get("smoke"):
        out.append("SMOKE RUN: tiny sizes, the figures mean nothing")
    return "\n".join(out)


def render_markdown(r: dict[str, Any]) -> str:
    """The same table as Markdown, for BENCHMARKS.md: python -m bench.report bench/results/<run>.json"""
    out = ["| figure | value | target | |", "|---|---|---|---|"]
    out += ["| " + " | ".join(c.replace("<=", "≤").replace(">=", "≥").strip() for c in row) + " |"
            for row in rows(r)]
    return "\n".join(out)


if __name__ == "__main__":
    import json
    import sys

    print(render_markdown(json.loads(open(sys.argv[1]).read())))
