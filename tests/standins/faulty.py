"""A Gradio stand-in that misbehaves when a test tells it to.

It speaks the HTTP protocol of UPSTREAM-NOTES.md (GET /config, GET
/gradio_api/info, POST /gradio_api/call/<api> -> event_id, GET
/gradio_api/call/<api>/<event_id> as SSE, POST /gradio_api/cancel and
/gradio_api/upload) on 127.0.0.1, from one asyncio loop in a background
thread, so a single instance holds thousands of open streams.

Several apps live side by side under path prefixes (`/<name>/config`, ...):
each model of a test's models file points at its own app. A test arms a
fault on an app (`app.inject(Fault("status", status=503))`); the next call
consumes it. Everything that reached the stand-in is recorded (requests and
their headers, how each job ended) and can be awaited with `wait_for`.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable

# The smallest valid PNG (1x1, transparent): what image_url fetches get from the stand-in.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63fcffff3f0300050001ff0d0a2db40000000049454e44ae426082")
GATE_DEADLINE = 60.0
REASONS = {200: "OK", 302: "Found", 404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, consumed by the next POST /call of the app it is armed on.

    kind:
      status        answer `status` (with `retry_after` when given) at `at` ("call" or "events")
      hang          accept the request and never answer it, at `at` ("call" or "events")
      die           send one generating event, then drop the connection mid-stream
      bad_sse       send an event whose data is not JSON
      bad_json      answer the POST /call with 200 and a body that is not JSON
      no_event_id   answer the POST /call with JSON lacking an event_id
      heartbeat     send heartbeats and nothing else, forever
      enormous      answer with one output of `size` characters
      app_error     send Gradio's `error` event with `message`
      output        answer with `message` as the output (any text, lone surrogates included)
      stream        stream `message` as growing snapshots, `size` characters more each (0: a word more)
      file          answer with a file output (Gradio's FileData) whose URL is `message`
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    at: str = "call"
    size: int = 0
    message: str | None = None


@dataclass
class Job:
    event_id: str
    app: str
    fault: Fault | None
    data: Any
    ended: str = "pending"        # "completed", "closed_by_gateway", "cancelled", "failed"


@dataclass
class Seen:
    """One request as it reached the stand-in."""

    app: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


def _chat_api(version: int, multimodal: bool) -> tuple[str, list[dict[str, Any]]]:
    """The app's endpoint name and parameters; version 2 is a redeployed app with another API."""
    if multimodal:
        message = {"parameter_name": "message", "label": "Message", "parameter_has_default": False,
                   "component": "MultimodalTextbox",
                   "type": {"type": "object", "properties": {"text": {"type": "string"},
                                                             "files": {"type": "array"}}},
                   "python_type": {"type": "Dict(text: str, files: List[filepath])"}}
    else:
        message = {"parameter_name": "message", "label": "Message", "parameter_has_default": False,
                   "component": "Textbox", "type": {"type": "string"}, "python_type": {"type": "str"}}
    if version == 1:
        return "chat", [message]
    system = {"parameter_name": "system_prompt", "label": "System prompt", "parameter_has_default": True,
              "parameter_default": "be brief", "component": "Textbox", "type": {"type": "string"},
              "python_type": {"type": "str"}}
    return "respond", [message, system]


class App:
    """One Gradio app of the stand-in: its API, its reply, its armed faults, what reached it."""

    def __init__(self, server: "FaultyGradio", name: str, *, words: int = 3, interval: float = 0.0,
                 multimodal: bool = False, gate: int = 0, heartbeat: float = 0.2,
                 generator: bool = True, components: int = 0) -> None:
        self.server = server
        self.name = name
        self.words = words              # the reply streams this many words
        self.interval = interval        # seconds between two generating events
        self.multimodal = multimodal
        self.gate = gate                # hold every stream (heartbeating) until this many are open at once
        self.heartbeat = heartbeat      # seconds between two heartbeats
        self.generator = generator      # False: the endpoint does not stream (the gateway pseudo-streams)
        self.components = components    # layout components of 1 KiB each in /config: a real app's size
        self.streaming = 0              # this app's open event streams
        self.peak = 0                   # the most that were open at once
        self.version = 1
        self.faults: deque[Fault] = deque()
        self.redirect_to: str | None = None   # answer every GET with a 302 to this URL

    @property
    def url(self) -> str:
        return f"{self.server.url}/{self.name}/"

    @property
    def api_name(self) -> str:
        return _chat_api(self.version, self.multimodal)[0]

    def inject(self, *faults: Fault) -> None:
        with self.server.lock:
            self.faults.extend(faults)

    def reply(self) -> str:
        return " ".join(f"word{i}" for i in range(self.words))

    def config(self) -> dict[str, Any]:
        api_name, _ = _chat_api(self.version, self.multimodal)
        return {"version": "6.31.0", "protocol": "sse_v3", "api_prefix": "/gradio_api",
                "dependencies": [{"id": 3, "api_name": api_name, "types": {"generator": self.generator},
                                  "api_visibility": "public"}],
                "components": [{"id": 100 + i, "type": "markdown", "props": {"value": f"{i:04d}" * 256}}
                               for i in range(self.components)]}

    def info(self) -> dict[str, Any]:
        api_name, params = _chat_api(self.version, self.multimodal)
        return {"named_endpoints": {f"/{api_name}": {
            "parameters": params,
            "returns": [{"label": "Response", "type": {"type": "string"}, "component": "Textbox"}]}},
            "unnamed_endpoints": {}}


class FaultyGradio:
    """The stand-in server: start(), add apps, arm faults, read records, stop()."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.apps: dict[str, App] = {}
        self.jobs: dict[str, Job] = {}
        self.seen: list[Seen] = []
        self.counts: Counter[str] = Counter()   # open_connections, open_streams, cancels, ...
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-gradio", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None
        self.keep_records = True

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultyGradio":
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def refuse(self) -> None:
        """Stop listening and drop every open connection: connections are refused from now on."""
        self._call(self._close_listener())

    def accept(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def accept_if_refusing(self) -> None:
        if self._server is None:
            self.accept()

    def add(self, name: str, **options: Any) -> App:
        app = App(self, name, **options)
        self.apps[name] = app
        return app

    # ------------------------------------------------------------ what the tests read

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until predicate() holds (it is re-checked whenever the stand-in records something)."""
        with self.lock:
            return self.lock.wait_for(predicate, timeout)

    def requests_to(self, app: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.app == app]

    def jobs_of(self, app: str) -> list[Job]:
        with self.lock:
            return [j for j in self.jobs.values() if j.app == app]

    def forget(self) -> None:
        with self.lock:
            self.seen.clear()
            self.jobs.clear()

    # ------------------------------------------------------------ internals

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _count(self, key: str, step: int = 1) -> None:
        with self.lock:
            self.counts[key] += step
            self.lock.notify_all()

    def _end(self, job: Job, how: str) -> None:
        with self.lock:
            if job.ended == "pending":
                job.ended = how
                self.counts["jobs_" + how] += 1
            self.lock.notify_all()

    async def _listen(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        # asyncio listens again with its own backlog (100 by default): a burst of thousands of
        # connections needs a deep accept queue, or the kernel drops them.
        self._server = await asyncio.start_server(self._handle, sock=sock, limit=1 << 20, backlog=4096)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        await self._close_listener()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._count("open_connections")
        self._count("connections_accepted")
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if not await self._dispatch(method, target, headers, body, reader, writer):
                    break
            # An answer that ends the connection (an event stream with `Connection: close`): what
            # drain() left in the transport's buffer (up to its high-water mark) goes out before
            # the close; abort() would drop it, and a reader slower than the writer saw a
            # truncated answer.
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                asyncio.TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._count("open_connections", -1)

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes,
                        reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        path = target.split("?", 1)[0]
        name, _, rest = path.lstrip("/").partition("/")
        app = self.apps.get(name)
        if method == "POST" and rest == "gradio_api/cancel":
            return await self._cancel(headers, body, writer)
        with self.lock:
            if self.keep_records:
                self.seen.append(Seen(name, method, "/" + rest, headers, body[:4096]))
            self.lock.notify_all()
        if app is None:
            return await self._json(writer, 404, {"detail": "Not Found"})
        if app.redirect_to and method == "GET":
            return await self._send(writer, 302, b"", {"Location": app.redirect_to})
        if method == "GET" and rest == "image.png":
            return await self._send(writer, 200, PNG, {"Content-Type": "image/png"})
        if method == "GET" and rest == "config":
            return await self._json(writer, 200, app.config())
        if method == "GET" and rest == "gradio_api/info":
            return await self._json(writer, 200, app.info())
        if method == "POST" and rest == "gradio_api/upload":
            self._count("uploads")
            return await self._json(writer, 200, [f"/tmp/gradio/{secrets.token_hex(4)}/upload.bin"])
        if method == "POST" and rest.startswith("gradio_api/call/"):
            return await self._submit(app, rest[len("gradio_api/call/"):], body, reader, writer)
        if method == "GET" and rest.startswith("gradio_api/call/"):
            api, _, event_id = rest[len("gradio_api/call/"):].partition("/")
            return await self._events(app, api, event_id, reader, writer)
        return await self._json(writer, 404, {"detail": "Not Found"})

    async def _cancel(self, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Cancel a job; a late cancel of a job from before forget() is counted but not recorded."""
        event_id = _loads(body).get("event_id")
        job = self.jobs.get(event_id) if isinstance(event_id, str) else None
        self._count("cancels")
        if job is not None:
            with self.lock:
                self.seen.append(Seen(job.app, "POST", "/gradio_api/cancel", headers, body[:4096]))
            self._end(job, "cancelled")
        return await self._json(writer, 200, {"success": True})

    async def _submit(self, app: App, api: str, body: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        if api != app.api_name:
            return await self._json(writer, 404, {"detail": "Not Found"})
        payload = _loads(body)
        data = payload.get("data")
        _, params = _chat_api(app.version, app.multimodal)
        if not isinstance(data, list) or len(data) != len(params):
            return await self._json(writer, 422, {"detail": "wrong number of inputs"})
        with self.lock:
            fault = app.faults.popleft() if app.faults else None
        if fault and fault.at == "call":
            if fault.kind == "status":
                return await self._status(writer, fault)
            if fault.kind == "hang":
                return await self._hang(None, reader)
            if fault.kind == "bad_json":
                return await self._send(writer, 200, b"<html>upstream proxy error</html>",
                                        {"Content-Type": "application/json"})
            if fault.kind == "no_event_id":
                return await self._json(writer, 200, {"queued": True})
        job = Job(secrets.token_hex(8), app.name, fault, data)
        with self.lock:
            self.jobs[job.event_id] = job
            self.counts["jobs_started"] += 1
            self.lock.notify_all()
        return await self._json(writer, 200, {"event_id": job.event_id})

    async def _events(self, app: App, api: str, event_id: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        job = self.jobs.get(event_id)
        if job is None or api != app.api_name:
            return await self._json(writer, 404, {"detail": "Not Found"})
        fault = job.fault
        if fault and fault.kind == "status":
            self._end(job, "failed")
            return await self._status(writer, fault)
        if fault and fault.kind == "hang":
            return await self._hang(job, reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        self._count("open_streams")
        with self.lock:
            app.streaming += 1
            app.peak = max(app.peak, app.streaming)
        gone = asyncio.ensure_future(reader.read(1))   # b"" once the gateway hangs up
        try:
            await self._stream(app, job, writer, gone)
        except ConnectionError:
            self._end(job, "closed_by_gateway")
        finally:
            gone.cancel()
            with self.lock:
                app.streaming -= 1
            self._count("open_streams", -1)
        return False

    async def _stream(self, app: App, job: Job, writer: asyncio.StreamWriter, gone: asyncio.Future) -> None:
        fault = job.fault

        async def send(kind: str, data: Any, raw: bytes | None = None) -> bool:
            """Write one event and wait out the interval; False once the gateway has hung up."""
            payload = raw if raw is not None else json.dumps(data).encode()
            chunk = b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if kind == "complete":      # the job is done: nothing the gateway does now changes that
                self._finish(writer)
                self._end(job, "completed")
            await writer.drain()
            if kind == "complete":
                return True
            if app.interval or kind == "heartbeat":
                await asyncio.wait([gone], timeout=app.heartbeat if kind == "heartbeat" else app.interval)
            if gone.done() or self._stopping.is_set():
                self._end(job, "closed_by_gateway")
                return False
            return True

        if fault and fault.kind == "heartbeat":
            while await send("heartbeat", None):
                pass
            return
        # A barrier: wait, as a queued Gradio job does, with heartbeats; give up after GATE_DEADLINE
        # so a stream that never arrived fails the test instead of hanging it.
        give_up = asyncio.get_running_loop().time() + GATE_DEADLINE
        while app.peak < app.gate and asyncio.get_running_loop().time() < give_up:
            if not await send("heartbeat", None):
                return
        if fault and fault.kind == "bad_sse":
            await send("generating", None, raw=b'["word0", {not json')
            await gone
            self._end(job, "closed_by_gateway")
            return
        if fault and fault.kind == "app_error":
            await send("error", {"error": fault.message, "title": "Error", "duration": None, "visible": True})
            self._finish(writer)
            self._end(job, "failed")
            return
        if fault and fault.kind in ("enormous", "output"):
            text = "x" * fault.size if fault.kind == "enormous" else (fault.message or "")
            await send("generating", [text[: fault.size // 2], None])
            await send("complete", [text, None])
            return
        if fault and fault.kind == "file":
            await send("complete", [{"url": fault.message, "path": "click.png", "orig_name": "click.png",
                                     "meta": {"_type": "gradio.FileData"}}, None])
            return
        if fault and fault.kind == "stream":
            text = fault.message or ""
            ends = range(fault.size, len(text), fault.size) if fault.size else \
                [i for i, ch in enumerate(text) if ch == " "]
            for end in ends:
                if not await send("generating", [text[:end], None]):
                    return
            await send("complete", [text, None])
            return
        words = app.reply().split(" ")
        for i in range(1, len(words) + 1):
            if not await send("generating", [" ".join(words[:i]), None]):
                return
            if fault and fault.kind == "die":
                self._end(job, "failed")
                writer.transport.abort()
                return
        await send("complete", [" ".join(words), None])

    @staticmethod
    def _finish(writer: asyncio.StreamWriter) -> None:
        writer.write(b"0\r\n\r\n")

    async def _hang(self, job: Job | None, reader: asyncio.StreamReader) -> bool:
        """Say nothing until the gateway hangs up (or the stand-in stops)."""
        self._count("hanging")
        gone = asyncio.ensure_future(reader.read(1))   # the request was read in full: EOF next
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([gone, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            gone.cancel()
            self._count("hanging", -1)
            self._count("hangs_ended")
        if job is not None:
            self._end(job, "closed_by_gateway")
        return False

    async def _status(self, writer: asyncio.StreamWriter, fault: Fault) -> bool:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return await self._json(writer, fault.status, {"error": f"stand-in says {fault.status}"}, headers)

    async def _json(self, writer: asyncio.StreamWriter, status: int, obj: Any,
                    headers: dict[str, str] | None = None) -> bool:
        return await self._send(writer, status, json.dumps(obj).encode(),
                                {"Content-Type": "application/json", **(headers or {})})

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                    headers: dict[str, str]) -> bool:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return True


def _loads(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
