"""A protocol-faithful Gradio 6 stand-in that answers at once: the upstream for capacity figures.

It speaks what the gateway (and any client of Gradio's HTTP API) uses, the way
Gradio 6.31 does on the wire (see /work/shared/UPSTREAM-NOTES.md):

- GET  /config                         version, protocol sse_v3, api_prefix, dependencies
                                       (id, api_name, types.generator, api_visibility, ...)
- GET  /gradio_api/info                named_endpoints with parameters and returns
- POST /gradio_api/call/<api>          {"data": [...], "session_hash"?} -> {"event_id"}
- GET  /gradio_api/call/<api>/<id>     text/event-stream, chunked, one event per chunk:
                                       `event: generating` snapshots, then `event: complete`
                                       (or `event: error`), `heartbeat` every 15 s
- POST /gradio_api/cancel              {"event_id", "session_hash", "fn_index"}

Two endpoints, like the two kinds of ChatInterface: `/chat` is a generator
(message, system_message, max_tokens; outputs [text, null]) and `/respond` is
not. A reply has CHUNKS snapshots, DELAY seconds apart; a message may override
both with words like `chunks=50 delay=0.01`. The word `hold` makes the job send
its first snapshot and then wait until POST /bench/release (used to hold
thousands of streams open at once). GET /bench/stats counts calls, open
streams and cancels. Closing the event stream stops the job, as in Gradio.

Run: python -m bench.standin --port 7870 [--chunks 8] [--delay 0]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
from email.utils import formatdate
from typing import Any

VERSION = "6.31.0"
HEARTBEAT = float(os.environ.get("STANDIN_HEARTBEAT", "15"))   # Gradio's heartbeat rate
OVERRIDE = re.compile(r"\b(chunks|delay)=([0-9.]+)")

MESSAGE = {"label": "", "parameter_name": "message", "parameter_has_default": False,
           "parameter_default": None, "type": {"type": "string"},
           "python_type": {"type": "str", "description": ""}, "component": "Textbox",
           "example_input": "Hello!!"}
SYSTEM = {"label": "System message", "parameter_name": "system_message", "parameter_has_default": True,
          "parameter_default": "You are a test bot.", "type": {"type": "string"},
          "python_type": {"type": "str", "description": ""}, "component": "Textbox",
          "example_input": "Hello!!"}
MAX_TOKENS = {"label": "Max tokens", "parameter_name": "max_tokens", "parameter_has_default": True,
              "parameter_default": 64, "type": {"type": "number", "description": "numeric value between 1 and 512"},
              "python_type": {"type": "float", "description": ""}, "component": "Slider", "example_input": 1}
RETURNS = [{"label": "Response", "type": {"type": {}, "description": "any valid json"},
            "python_type": {"type": "str | float | bool | list | dict", "description": "any valid json"},
            "component": "Json"}]
# api_name -> (dependency id, generator, parameters)
ENDPOINTS = {"chat": (6, True, [MESSAGE, SYSTEM, MAX_TOKENS]), "respond": (7, False, [MESSAGE])}


def dependency(fn_index: int, api_name: str, generator: bool, n_inputs: int) -> dict[str, Any]:
    """A dependency entry of /config, with the fields Gradio 6.31 sends."""
    return {"id": fn_index, "targets": [[13, "click"]], "inputs": list(range(20, 20 + n_inputs)),
            "outputs": [14, 15], "backend_fn": True, "queue": True, "api_name": api_name,
            "api_description": None, "scroll_to_output": False, "show_progress": "full",
            "show_progress_on": None, "batch": False, "max_batch_size": 4, "cancels": [],
            "types": {"generator": generator, "cancel": False}, "collects_event_data": False,
            "trigger_after": None, "trigger_only_on_success": False, "trigger_only_on_failure": False,
            "trigger_mode": "once", "api_visibility": "public", "rendered_in": None, "render_id": None,
            "connection": "sse", "time_limit": None, "stream_every": 0.5, "event_specific_args": None,
            "component_prop_inputs": [], "js_implementation": None}


def app_config(root: str) -> dict[str, Any]:
    deps = [dependency(i, name, gen, len(params)) for name, (i, gen, params) in ENDPOINTS.items()]
    # Undocumented helper dependencies, as a ChatInterface has: the gateway must skip them.
    deps.insert(0, {**dependency(0, "_submit_fn", True, 4), "api_visibility": "undocumented"})
    return {"version": VERSION, "api_prefix": "/gradio_api", "mode": "chat_interface",
            "app_id": 1, "dev_mode": False, "analytics_enabled": False, "components": [],
            "connect_heartbeat": True, "title": "Gradio", "space_id": None, "enable_queue": True,
            "show_error": False, "protocol": "sse_v3", "dependencies": deps, "layout": {},
            "username": None, "root": root}


def api_info() -> dict[str, Any]:
    named = {f"/{name}": {"parameters": params, "returns": RETURNS, "api_visibility": "public",
                          "description": ""}
             for name, (_, _, params) in ENDPOINTS.items()}
    return {"named_endpoints": named, "unnamed_endpoints": {}}


class Job:
    __slots__ = ("api", "data", "session_hash", "cancelled")

    def __init__(self, api: str, data: list[Any], session_hash: str | None) -> None:
        self.api, self.data, self.session_hash, self.cancelled = api, data, session_hash, False


class StandIn:
    def __init__(self, chunks: int, delay: float) -> None:
        self.chunks, self.delay = chunks, delay
        self.jobs: dict[str, Job] = {}
        self.release = asyncio.Event()
        self.stats = {"calls": 0, "streams_open": 0, "streams_max": 0, "completed": 0,
                      "cancels": 0, "connections": 0}
        self.config_body = b""

    # ------------------------------------------------------------ HTTP/1.1, keep-alive

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        # uvicorn's sockets have TCP_NODELAY (asyncio sets it only when the listening socket
        # came from getaddrinfo); without it one event per write meets delayed ACKs: +40 ms.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self.route(method, target.split("?", 1)[0], body, reader, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            writer.close()

    def send(self, writer: asyncio.StreamWriter, status: str, body: bytes,
             ctype: str = "application/json") -> None:
        writer.write(f"HTTP/1.1 {status}\r\ndate: {formatdate(usegmt=True)}\r\nserver: uvicorn\r\n"
                     f"content-length: {len(body)}\r\ncontent-type: {ctype}\r\n\r\n".encode() + body)

    async def route(self, method: str, path: str, body: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        parts = path.strip("/").split("/")
        if method == "GET" and path in ("/config", "/config/"):
            self.send(writer, "200 OK", self.config_body)
        elif method == "GET" and path.rstrip("/") == "/gradio_api/info":
            self.send(writer, "200 OK", json.dumps(api_info()).encode())
        elif method == "POST" and parts[:2] == ["gradio_api", "call"] and len(parts) == 3:
            return self.submit(parts[2], body, writer)
        elif method == "GET" and parts[:2] == ["gradio_api", "call"] and len(parts) == 4:
            return await self.events(parts[2], parts[3], reader, writer)
        elif method == "POST" and path == "/gradio_api/cancel":
            info = json.loads(body or b"{}")
            job = self.jobs.get(info.get("event_id", ""))
            if job is not None:
                job.cancelled = True
            self.stats["cancels"] += 1
            self.send(writer, "200 OK", b'{"success":true}')
        elif method == "GET" and path == "/bench/stats":
            self.send(writer, "200 OK", json.dumps(self.stats).encode())
        elif method == "POST" and path == "/bench/release":
            self.release.set()
            self.release = asyncio.Event()
            self.send(writer, "200 OK", b"{}")
        else:
            self.send(writer, "404 Not Found", b'{"detail":"Not Found"}')
        await writer.drain()
        return True

    def submit(self, api: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if api not in ENDPOINTS:
            # Gradio 6 answers an unknown api_name with a bare 500.
            self.send(writer, "500 Internal Server Error", b"Internal Server Error", "text/plain; charset=utf-8")
            return True
        payload = json.loads(body or b"{}")
        event_id = secrets.token_hex(16)
        self.jobs[event_id] = Job(api, payload.get("data") or [], payload.get("session_hash"))
        self.stats["calls"] += 1
        self.send(writer, "200 OK", json.dumps({"event_id": event_id}).encode())
        return True

    async def events(self, api: str, event_id: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool:
        job = self.jobs.pop(event_id, None)
        writer.write(f"HTTP/1.1 200 OK\r\ndate: {formatdate(usegmt=True)}\r\nserver: uvicorn\r\n"
                     "content-type: text/event-stream; charset=utf-8\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        self.stats["streams_open"] += 1
        self.stats["streams_max"] = max(self.stats["streams_max"], self.stats["streams_open"])
        # Closing the event stream stops the job: watch for the client hanging up meanwhile.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            if job is None or api != job.api:
                # Gradio 6.31 starts the response, then fails inside it: the chunked body ends unfinished.
                await writer.drain()
                return False
            await self.run(job, writer, gone)
            gone.cancel()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            # A byte read by the watcher belongs to a pipelined request we cannot replay: close.
            return not (gone.done() and not gone.cancelled())
        finally:
            self.stats["streams_open"] -= 1
            gone.cancel()

    async def event(self, writer: asyncio.StreamWriter, kind: str, data: Any) -> None:
        payload = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        await writer.drain()

    async def wait(self, writer: asyncio.StreamWriter, seconds: float, gone: asyncio.Future,
                   hold: bool = False) -> None:
        """Sleep (or wait for a release), sending heartbeats; raise when the client hung up."""
        waiter = asyncio.ensure_future(self.release.wait() if hold else asyncio.sleep(seconds))
        try:
            while True:
                done, _ = await asyncio.wait({waiter, gone}, timeout=HEARTBEAT,
                                             return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    raise ConnectionResetError("client closed the event stream")
                if waiter in done:
                    return
                await self.event(writer, "heartbeat", None)    # Gradio: `event: heartbeat` / `data: null`
        finally:
            waiter.cancel()

    async def run(self, job: Job, writer: asyncio.StreamWriter, gone: asyncio.Future) -> None:
        message = str(job.data[0] if job.data else "")
        text = message if isinstance(job.data[0] if job.data else "", str) else json.dumps(message)
        opts = dict(OVERRIDE.findall(text))
        chunks = max(1, int(float(opts.get("chunks", self.chunks))))
        delay = float(opts.get("delay", self.delay))
        hold = "hold" in text.split()
        words = [f"w{i}" for i in range(chunks)]
        generator = ENDPOINTS[job.api][1]
        snapshot = ""
        for i, word in enumerate(words):
            if job.cancelled:
                return
            snapshot = f"{snapshot} {word}" if snapshot else word
            if generator:
                await self.event(writer, "generating", [snapshot, None])
            if hold and i == 0:
                await self.wait(writer, 0, gone, hold=True)
            elif delay and i < chunks - 1:
                await self.wait(writer, delay, gone)
        if job.cancelled:
            return
        await self.event(writer, "complete", [snapshot, None])    # a ChatInterface's two outputs
        self.stats["completed"] += 1

    async def serve(self, host: str, port: int, ready_fd: int | None = None) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
        port = sock.getsockname()[1]
        self.config_body = json.dumps(app_config(f"http://{host}:{port}")).encode()
        server = await asyncio.start_server(self.handle, sock=sock, limit=1 << 20)
        print(f"standin ready http://{host}:{port}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7870)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    from .procs import raise_nofile
    raise_nofile()
    asyncio.run(StandIn(args.chunks, args.delay).serve(args.host, args.port))


if __name__ == "__main__":
    main()
