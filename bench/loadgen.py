"""The load generator: a separate asyncio process speaking raw HTTP/1.1 to the gateway.

    python -m bench.loadgen throughput --url http://127.0.0.1:8000 --model M --concurrency 32 --duration 10 [--stream]
    python -m bench.loadgen hold --url http://127.0.0.1:8000 --model M --streams 2000 --deadline 120

throughput: closed loop, CONCURRENCY keep-alive connections each sending one
completion after another for DURATION seconds; prints one JSON line.
hold: opens STREAMS streaming completions whose upstream job waits (the
stand-in's `hold` word) after its first snapshot; prints {"phase": "held"} once
every stream has delivered its first content chunk, then waits for each to end
with [DONE] (after the driver releases the stand-in) and prints {"phase": "done"}.
An error is anything but a 200 carrying the expected chunks and [DONE].
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def request_bytes(host: str, port: int, model: str, message: str, stream: bool) -> bytes:
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": message}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer bench\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Conn:
    """One keep-alive client connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, payload: bytes) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def body_parts(self, headers: dict[str, str]):
        """The response body as it arrives: a chunk at a time for chunked bodies."""
        assert self.reader is not None
        if "content-length" in headers:
            yield await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                data = await self.reader.readexactly(size + 2)
                yield data[:-2]
        else:
            while data := await self.reader.read(65536):
                yield data
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()


async def one_completion(conn: Conn, payload: bytes, stream: bool) -> tuple[bool, str]:
    """Send one completion and read it all; (ok, why-not)."""
    try:
        status, headers = await conn.send(payload)
        body = b"".join([part async for part in conn.body_parts(headers)])
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        conn.close()
        return False, type(exc).__name__
    if status != 200:
        return False, f"HTTP {status}"
    if stream:
        ok = body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body
        return ok, "" if ok else "stream did not end with [DONE]"
    try:
        ok = bool(json.loads(body)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError):
        ok = False
    return ok, "" if ok else "no content"


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    payload = request_bytes(host, port, args.model, args.message, args.stream)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    end = 0.0

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                ok, why = await one_completion(conn, payload, args.stream)
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[why] = errors.get(why, 0) + 1
        finally:
            conn.close()

    start = time.monotonic()
    end = start + args.duration
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - start
    return {"mode": "throughput", "stream": args.stream, "concurrency": args.concurrency,
            "elapsed_s": elapsed, "requests": len(latencies), "errors": sum(errors.values()),
            "error_kinds": errors, "rps": len(latencies) / elapsed,
            "latency_ms_p50": (percentile(latencies, 50) or 0) * 1000,
            "latency_ms_p99": (percentile(latencies, 99) or 0) * 1000}


async def hold(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    payload = request_bytes(host, port, args.model, "hold chunks=3 " + args.message, True)
    opening = asyncio.Semaphore(args.open_concurrency)   # bounded connects: no SYN-backlog storm
    opened = 0
    all_open = asyncio.Event()
    errors: dict[str, int] = {}
    done = 0
    deadline = time.monotonic() + args.deadline

    def fail(why: str) -> None:
        errors[why] = errors.get(why, 0) + 1
        check_open()

    def check_open() -> None:
        if opened + sum(errors.values()) >= args.streams:
            all_open.set()

    async def stream() -> None:
        nonlocal opened, done
        conn = Conn(host, port)
        try:
            async with opening:
                status, headers = await asyncio.wait_for(conn.send(payload), deadline - time.monotonic())
                if status != 200:
                    return fail(f"HTTP {status}")
                parts = conn.body_parts(headers)
                seen = b""
                while b'"content":"w0"' not in seen:
                    seen += await asyncio.wait_for(parts.__anext__(), deadline - time.monotonic())
            opened += 1
            check_open()
            while not seen.endswith(b"data: [DONE]\n\n"):
                seen += await asyncio.wait_for(parts.__anext__(), deadline - time.monotonic())
            if b'"error"' in seen or b"w2" not in seen:
                return fail("bad stream content")
            done += 1
        except asyncio.TimeoutError:
            fail("timeout")
        except (OSError, asyncio.IncompleteReadError, StopAsyncIteration, ValueError) as exc:
            fail(type(exc).__name__)
        finally:
            conn.close()

    start = time.monotonic()
    tasks = [asyncio.ensure_future(stream()) for _ in range(args.streams)]
    try:
        await asyncio.wait_for(all_open.wait(), deadline - time.monotonic())
    except asyncio.TimeoutError:
        pass
    held = {"phase": "held", "streams": args.streams, "open": opened, "errors": sum(errors.values()),
            "open_s": time.monotonic() - start}
    print(json.dumps(held), flush=True)
    await asyncio.gather(*tasks)
    return {"phase": "done", "mode": "hold", "streams": args.streams, "held": opened, "completed": done,
            "errors": sum(errors.values()), "error_kinds": errors, "elapsed_s": time.monotonic() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "hold"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--message", default="bench")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    from .procs import raise_nofile
    raise_nofile()
    result = asyncio.run(throughput(args) if args.mode == "throughput" else hold(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
