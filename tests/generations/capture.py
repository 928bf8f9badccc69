"""Capture what each Gradio generation shows and says, for whoever writes the gateway's upstream layer.

    python -m tests.generations.capture OUT_DIR PORT_FILE ...

For every port file written by space_apps.py: <OUT>/<version>/<app>/config.json and info.json (the
API description at the app's prefix; info-root.json too where the prefix is /gradio_api), and one raw
protocol exchange of a streaming chat (trace-stream.txt) and of the two-step chat (trace-two-step.txt),
spoken by hand with requests / websockets the way the version expects: the websocket queue (3.x), the
SSE queue (4.0-4.19), /call (4.20+). Not a test: a tool to look at real servers with.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import requests


def get_json(url: str):
    r = requests.get(url, timeout=10)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)


def dependency(config: dict, api_name: str | None = None, trigger_after: int | None = None) -> tuple[int, dict]:
    for index, dep in enumerate(config["dependencies"]):
        if api_name and dep.get("api_name") == api_name:
            return index, dep
        if trigger_after is not None and dep.get("trigger_after") == trigger_after:
            return index, dep
    raise LookupError(api_name or trigger_after)


def chat_dependency(config: dict) -> tuple[int, dict]:
    """The ChatInterface's API dependency: /chat (3.x-5.x) or the one named after the function (6.x)."""
    for name in ("chat", "stream_echo", "respond", "overloaded", "quota"):
        try:
            return dependency(config, name)
        except LookupError:
            continue
    raise LookupError("no chat endpoint")


def inputs_for(config: dict, dep: dict, message) -> list:
    """Every input of a dependency in order: the message first, None at State, defaults elsewhere."""
    comps = {c["id"]: c for c in config["components"]}
    data = []
    for position, cid in enumerate(dep["inputs"]):
        comp = comps.get(cid, {})
        if position == 0:
            data.append(message)
        elif comp.get("type") == "state":
            data.append(None)
        else:
            data.append(comp.get("props", {}).get("value"))
    return data


class Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, direction: str, text) -> None:
        if not isinstance(text, str):
            text = json.dumps(text)
        self.lines.append(f"{direction} {text}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# ---- 3.x: the websocket queue -------------------------------------------------------------------

async def ws_job(url: str, fn_index: int, data: list, session_hash: str, trace: Trace):
    import websockets

    ws_url = url.replace("http://", "ws://").rstrip("/") + "/queue/join"
    trace.add("#", f"WS {ws_url}")
    async with websockets.connect(ws_url, max_size=None) as ws:
        async for raw in ws:
            trace.add("<", raw)
            msg = json.loads(raw)
            if msg["msg"] == "send_hash":
                out = {"fn_index": fn_index, "session_hash": session_hash}
                trace.add(">", out)
                await ws.send(json.dumps(out))
            elif msg["msg"] == "send_data":
                out = {"data": data, "event_data": None, "fn_index": fn_index, "session_hash": session_hash}
                trace.add(">", out)
                await ws.send(json.dumps(out))
            elif msg["msg"] == "process_completed":
                return msg


def run_predict(url: str, fn_index: int, data: list, session_hash: str, trace: Trace):
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None}
    trace.add(">", f"POST {url}run/predict {json.dumps(body)}")
    r = requests.post(url + "run/predict", json=body, timeout=30)
    trace.add("<", f"{r.status_code} {r.text}")
    return r.json()


# ---- 4.0-4.19: the SSE queue --------------------------------------------------------------------

def sse_queue_job(url: str, fn_index: int, data: list, session_hash: str, trace: Trace):
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
            "trigger_id": None}
    trace.add(">", f"POST {url}queue/join {json.dumps(body)}")
    r = requests.post(url + "queue/join", json=body, timeout=10)
    trace.add("<", f"{r.status_code} {r.text}")
    event_id = r.json()["event_id"]
    trace.add(">", f"GET {url}queue/data?session_hash={session_hash}")
    with requests.get(url + "queue/data", params={"session_hash": session_hash}, stream=True, timeout=30) as s:
        trace.add("<", f"{s.status_code} {s.headers.get('content-type')}")
        last = None
        for line in s.iter_lines(decode_unicode=True):
            trace.add("<", line)
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    last = msg
                    break
        return last


# ---- 4.20+: /call -------------------------------------------------------------------------------

def call_job(base: str, api_name: str, data: list, trace: Trace):
    body = {"data": data}
    trace.add(">", f"POST {base}/call/{api_name} {json.dumps(body)}")
    r = requests.post(f"{base}/call/{api_name}", json=body, timeout=10)
    trace.add("<", f"{r.status_code} {r.text}")
    event_id = r.json()["event_id"]
    trace.add(">", f"GET {base}/call/{api_name}/{event_id}")
    last = None
    with requests.get(f"{base}/call/{api_name}/{event_id}", stream=True, timeout=30) as s:
        trace.add("<", f"{s.status_code} {s.headers.get('content-type')}")
        event = None
        for line in s.iter_lines(decode_unicode=True):
            trace.add("<", line)
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                last = json.loads(line[5:])
    return last


def protocol_of(config: dict, prefer_queue: bool = False) -> str:
    """ws (3.x), sse-queue (4.0-4.19), call (4.20+: 4.20.x still says protocol "sse_v2")."""
    if "protocol" not in config:
        return "ws"
    version = tuple(int(p) for p in config["version"].split(".")[:2])
    if version < (4, 20) or prefer_queue:
        return "sse-queue"
    return "call"


def trace_stream(url: str, config: dict, prefer_queue: bool = False) -> str:
    trace = Trace()
    proto = protocol_of(config, prefer_queue)
    fn_index, dep = chat_dependency(config)
    data = inputs_for(config, dep, "hello there world")
    session = uuid.uuid4().hex[:11]
    trace.add("#", f"gradio {config.get('version')} protocol={config.get('protocol')} -> {proto}; "
                   f"fn_index={fn_index} api_name={dep.get('api_name')} inputs={dep['inputs']}")
    if proto == "ws":
        asyncio.run(ws_job(url, fn_index, data, session, trace))
    elif proto == "sse-queue":
        sse_queue_job(url.rstrip("/") + config.get("api_prefix", "") + "/", fn_index, data, session, trace)
    else:
        call_job(url.rstrip("/") + config.get("api_prefix", ""), dep["api_name"], data, trace)
    return trace.text()


def trace_two_step(url: str, config: dict, prefer_queue: bool = False) -> str:
    trace = Trace()
    proto = protocol_of(config, prefer_queue)
    deps = config["dependencies"]
    first = next(i for i, d in enumerate(deps) if d.get("trigger_after") is None
                 and any(t[1] == "submit" for t in d.get("targets", [])))
    follower = next(i for i, d in enumerate(deps) if d.get("trigger_after") == first)
    trace.add("#", f"gradio {config.get('version')} protocol={config.get('protocol')} -> {proto}; "
                   f"first fn_index={first} api_name={deps[first].get('api_name')} queue={deps[first].get('queue')} "
                   f"inputs={deps[first]['inputs']} outputs={deps[first]['outputs']}; follower fn_index={follower} "
                   f"api_name={deps[follower].get('api_name')} trigger_after={deps[follower].get('trigger_after')} "
                   f"inputs={deps[follower]['inputs']} outputs={deps[follower]['outputs']}")
    session = uuid.uuid4().hex[:11]
    data = ["hi two-step", []]
    if proto == "ws":
        out = run_predict(url, first, data, session, trace)
        history = out["data"][1]
        asyncio.run(ws_job(url, follower, [history], session, trace))
    elif proto == "sse-queue":
        out = run_predict(url, first, data, session, trace)
        history = out["data"][1]
        sse_queue_job(url, follower, [history], session, trace)
    else:
        base = url.rstrip("/") + config.get("api_prefix", "")
        out = call_job(base, deps[first]["api_name"], data, trace)
        history = out[1] if isinstance(out, list) else []
        call_job(base, deps[follower]["api_name"], [history], trace)
    return trace.text()


def capture(out: Path, port_file: Path) -> None:
    served = json.loads(port_file.read_text())
    version = served["gradio"]
    for app, url in served["apps"].items():
        folder = out / version / app
        folder.mkdir(parents=True, exist_ok=True)
        _, config = get_json(url + "config")
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        prefix = config.get("api_prefix", "")
        status, info = get_json(url.rstrip("/") + prefix + "/info")
        (folder / "info.json").write_text(json.dumps(info, indent=1) if status == 200 else f"{status} {info}")
        if prefix:
            status, info = get_json(url + "info")
            (folder / "info-root.json").write_text(json.dumps(info, indent=1) if status == 200
                                                   else f"HTTP {status} {info}")
    jobs = [("trace-stream.txt", trace_stream, "chat_stream", False),
            ("trace-two-step.txt", trace_two_step, "two_step", False),
            ("trace-error-raises.txt", trace_stream, "raises", False),
            ("trace-error-zerogpu.txt", trace_stream, "zerogpu", False)]
    if version.startswith("4.20."):    # both protocols work there
        jobs += [("trace-stream-queue.txt", trace_stream, "chat_stream", True),
                 ("trace-two-step-queue.txt", trace_two_step, "two_step", True)]
    if served["apps"].get("chat_stream") and "protocol" in get_json(served["apps"]["chat_stream"] + "config")[1]:
        # /call hides an app's error before 6.x (data: null); the SSE queue still says it
        jobs += [("trace-error-zerogpu-queue.txt", trace_stream, "zerogpu", True)]
    for name, fn, app, prefer_queue in jobs:
        url = served["apps"][app]
        _, config = get_json(url + "config")
        try:
            text = fn(url, config, prefer_queue)
        except Exception as exc:   # keep what was seen: a tool, not a test
            text = f"# capture failed: {exc!r}\n"
        (out / version / name).write_text(text)
    print(f"captured gradio {version} into {out / version}")


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    for arg in sys.argv[2:]:
        capture(out_dir, Path(arg))
