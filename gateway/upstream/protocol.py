"""Gradio's HTTP API: config, info, call, events, cancel, upload.

The two calls every completion makes go over lean.py's client where the connection is direct,
everything else over `requests`. This is the one boundary where exceptions of either become
GatewayErrors (like httpx's map_httpcore_exceptions); nothing above it sees a foreign one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from .. import fastjson
from ..concurrency import cooperate
from . import lean
from .bounded import READ_SIZE, YIELD_EVERY, Decoded, read_limited
from ..errors import (GatewayError, UpstreamApiChanged, UpstreamError, UpstreamQuota,
                      UpstreamTimeout, UpstreamUnauthorized, UpstreamUnavailable)

Answer = Any      # a requests.Response, or a lean.Response for a hot call on a direct connection

log = logging.getLogger("gateway.upstream")
CANCEL_TIMEOUT = (2.0, 2.0)            # seconds to connect and to hear back: a cancel is best effort
MAX_EVENT_BYTES = 32 * 1024 * 1024     # MAX_UPSTREAM_BYTES' default, for streams opened without a Gradio
RETRY_IN = re.compile(r"(?:try again in|retry in)\s+(?:(\d+):)?(\d+):(\d+)", re.I)
RETRY_SECONDS = re.compile(r"(?:try again in|retry in|retry after)\s+(\d+)\s*(?:s\b|sec|second)", re.I)


class RedirectRefused(UpstreamError):
    """502: the app redirected off its own host (CONTRACT §11), which the gateway does not follow."""


class UpstreamUnreachable(UpstreamUnavailable):
    """503 for a failure before the app could see the request: nothing connected, or the host's
    front (a load balancer, the Space's proxy) answered 502/503. Safe to retry: no prompt ran."""

    asked_wait: int | None = None      # the host's own Retry-After, when it sent one


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection was never made (refused, no route, no such name)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


@dataclass(frozen=True)
class Event:
    """One server-sent event of a Gradio job: generating, complete, error, heartbeat."""

    kind: str
    data: Any


def failure_reason(exc: BaseException) -> str:
    """Why a connection failed, in words an operator can act on: name resolution, refused, TLS, timeout.

    Read from the exception's chain (requests wraps urllib3, which wraps the socket's error), by
    type, never by message text. "" when nothing more specific is known.
    """
    request = getattr(exc, "request", None)
    host = urlsplit(getattr(request, "url", "") or getattr(exc, "url", "") or "").hostname or "the host"
    chain = _chain(exc)
    if _any(chain, socket.gaierror, urllib3.exceptions.NameResolutionError):
        return f"name resolution failed for {host}"
    if _any(chain, ConnectionRefusedError):
        return f"connection refused by {host}"
    tls = _any(chain, ssl.SSLError)
    if tls is not None:
        return f"TLS failed with {host} ({getattr(tls, 'reason', None) or type(tls).__name__})"
    if any(isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) for e in chain):
        return f"no route to {host}"
    # urllib3's NewConnectionError is a ConnectTimeoutError too: only a plain one is a timeout.
    if any(isinstance(e, (urllib3.exceptions.ConnectTimeoutError, socket.timeout)) and
           not isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain):
        return f"timed out connecting to {host}"
    return ""


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps: causes, contexts, urllib3's reasons, exceptions in args."""
    found: list[BaseException] = []
    stack: list[Any] = [exc]
    while stack and len(found) < 32:
        err = stack.pop()
        if not isinstance(err, BaseException) or any(err is f for f in found):
            continue
        found.append(err)
        stack += [err.__cause__, err.__context__, getattr(err, "reason", None),
                  *(a for a in err.args if isinstance(a, BaseException))]
    return found


def _any(chain: list[BaseException], *kinds: type[BaseException]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, kinds)), None)


def _because(exc: BaseException) -> str:
    reason = failure_reason(exc)
    return f": {reason}" if reason else ""


def _logged(err: GatewayError, what: str) -> GatewayError:
    """The same words in the log as in the answer (the message never carries a credential)."""
    log.warning("upstream failure (%s): %s", what, err.message)
    return err


HUB_LOOKUP = "Hub lookup of "      # how hub.space_info names what it does


def _party(what: str, start: bool = False) -> str:
    """Who failed: the Hub, for its look-ups, else the Gradio app (capitalised to start a sentence)."""
    party = "the Hub" if what.startswith(HUB_LOOKUP) else "the Gradio app"
    return "T" + party[1:] if start else party


def _stopped_answering(what: str) -> GatewayError:
    """A read timeout, logged like a connection failure, naming who went quiet: the Hub, within
    HUB_TIMEOUT, or the app."""
    if what.startswith(HUB_LOOKUP):
        return _logged(UpstreamTimeout(f"The Hub did not answer within HUB_TIMEOUT ({what})."), what)
    return _logged(UpstreamTimeout(f"The Gradio app stopped answering ({what})."), what)


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Translate `requests` and decoding failures into the gateway's error tree, saying why."""
    try:
        yield
    except GatewayError:
        raise
    except requests.exceptions.ConnectTimeout as exc:
        raise _logged(UpstreamTimeout(f"Timed out connecting to {_party(what)} ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.ReadTimeout:
        raise _stopped_answering(what) from None
    except requests.exceptions.ProxyError as exc:
        raise _logged(UpstreamUnavailable(f"The proxy refused the connection ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.SSLError as exc:
        raise _logged(UpstreamUnavailable(f"TLS failed talking to {_party(what)} ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.ConnectionError as exc:
        if _never_connected(exc):
            raise _logged(UpstreamUnreachable(f"{_party(what, start=True)} is unreachable ({what}){_because(exc)}."),
                          what) from None
        raise _logged(UpstreamUnavailable(f"The connection to {_party(what)} broke ({what}){_because(exc)}."),
                      what) from None
    except lean.ConnectTimedOut as exc:
        raise _logged(UpstreamTimeout(f"Timed out connecting to {_party(what)} ({what}){_because(exc)}."),
                      what) from None
    except lean.ReadTimedOut:
        raise _stopped_answering(what) from None
    except lean.TLSFailed as exc:
        raise _logged(UpstreamUnavailable(f"TLS failed talking to {_party(what)} ({what}){_because(exc)}."),
                      what) from None
    except lean.NotConnected as exc:
        raise _logged(UpstreamUnreachable(f"{_party(what, start=True)} is unreachable ({what}){_because(exc)}."),
                      what) from None
    except lean.Dropped as exc:
        raise _logged(UpstreamUnavailable(f"The connection to {_party(what)} broke ({what}){_because(exc)}."),
                      what) from None
    except lean.BrokenAnswer:        # mid-answer, or aborted by the gateway itself (not worth a log line)
        raise UpstreamError(f"The connection to the Gradio app broke ({what}).") from None
    except urllib3.exceptions.ReadTimeoutError:      # from raw reads of an event stream
        raise _stopped_answering(what) from None
    except urllib3.exceptions.HTTPError:             # the stream broke mid-answer
        raise UpstreamError(f"The connection to the Gradio app broke ({what}).") from None
    except (requests.exceptions.RequestException, OSError) as exc:
        if isinstance(exc, ValueError):   # requests' JSONDecodeError is both kinds: it is bad JSON
            raise UpstreamError(f"The Gradio app sent a malformed answer ({what}).") from None
        raise UpstreamError(f"The connection to the Gradio app failed ({what}){_because(exc)}.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UpstreamError(f"The Gradio app sent a malformed answer ({what}).") from None


def retry_after_from(text: str | None, header: str | None = None) -> int | None:
    """Seconds to wait, from a Retry-After header or a message like 'Try again in 0:01:00'."""
    if header and header.strip().isdigit():
        return int(header.strip())
    if text:
        m = RETRY_IN.search(text)
        if m:
            hours, minutes, seconds = (int(g or 0) for g in m.groups())
            return hours * 3600 + minutes * 60 + seconds
        m = RETRY_SECONDS.search(text)
        if m:
            return int(m.group(1))
    return None


def check_status(resp: requests.Response, what: str, detail: str | None = None) -> None:
    """Raise the error the contract names for a non-2xx answer of an app."""
    status = resp.status_code
    if status < 400:
        return
    detail = _detail(resp) if detail is None else detail
    if status in (401, 403):
        raise UpstreamUnauthorized(f"The Gradio app refused the credentials ({what}: HTTP {status}).")
    if status == 429:
        raise UpstreamQuota(f"The Gradio app is rate limited ({what}).",
                            retry_after=retry_after_from(detail, resp.headers.get("Retry-After")))
    retry_after = retry_after_from(None, resp.headers.get("Retry-After"))
    if status in (502, 503):
        # The host's front or Gradio's full queue refused the request: the app did not take it.
        exc = UpstreamUnreachable(f"The Gradio app is unavailable ({what}: HTTP {status}).",
                                  retry_after=retry_after or 10)
        exc.asked_wait = retry_after
        raise exc
    if status == 504:
        raise UpstreamUnavailable(f"The Gradio app is unavailable ({what}: HTTP {status}).",
                                  retry_after=retry_after or 10)
    if status in (404, 405, 422, 500) and what.startswith("call"):
        # Gradio answers an unknown api_name with 500 and bad inputs with 422: the cached API
        # description may be stale. The runner checks it against a fresh one.
        raise UpstreamApiChanged(f"The Gradio app rejected the call ({what}: HTTP {status}).")
    suffix = f": {detail}" if detail else ""
    raise UpstreamError(f"The Gradio app answered HTTP {status} ({what}){suffix}")


def _detail(resp: Answer) -> str:
    if isinstance(resp, lean.Response):     # its body is read within bounds by Gradio._check
        return ""
    try:
        body = resp.json()
    except (ValueError, RecursionError):
        return ""
    return detail_of(body)


def detail_of(body: Any) -> str:
    """The message of an error body: {"error": …} or FastAPI's {"detail": …}."""
    if isinstance(body, dict):
        value = body.get("error") or body.get("detail") or ""
        return value if isinstance(value, str) else ""
    return ""


_UNROUTED: Any = object()


class Gradio:
    """One Gradio app at base_url, spoken to over a shared requests.Session (and its lean client)."""

    def __init__(self, session: requests.Session, base_url: str, headers: dict[str, str],
                 *, connect_timeout: float, read_timeout: float, api_prefix: str = "/gradio_api",
                 max_bytes: int = 32 * 1024 * 1024) -> None:
        self.session = session
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.headers = headers
        self._sent_headers = CaseInsensitiveDict(session.headers)   # what Session.request would merge
        self._sent_headers.update(headers)
        self.timeout = (connect_timeout, read_timeout)
        self.api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self.max_bytes = max_bytes          # MAX_UPSTREAM_BYTES: one document, one event, one answer
        self._route: lean.Route | None = _UNROUTED    # the lean client's, found at the first hot call
        self._lean_fields: str | None = None

    def url(self, path: str) -> str:
        return self.base_url + (self.api_prefix + path).lstrip("/")

    def config(self) -> dict[str, Any]:
        """The app's /config (diagnose.gradio_config: NotAGradioApp says what answered instead)."""
        from .diagnose import gradio_config   # noqa: PLC0415 - diagnose builds on this module
        return gradio_config(self)

    def get_json(self, path: str, what: str, *, prefixed: bool = True) -> Any:
        url = self.url(path) if prefixed else self.base_url + path.lstrip("/")
        with mapped_errors(what):
            resp = self._send("GET", url, stream=True)
            self._check(resp, what)
            return json.loads(self._read(resp, what))

    def _read(self, resp: Answer, what: str, limit: int | None = None) -> bytes:
        """The whole body, at most MAX_UPSTREAM_BYTES once decoded; the connection goes back after."""
        try:
            pieces = resp.pieces() if isinstance(resp, lean.Response) else \
                resp.raw.stream(READ_SIZE, decode_content=False)
            return read_limited(pieces, resp.headers.get("Content-Encoding"), limit or self.max_bytes, what)
        finally:
            resp.close()

    def _check(self, resp: Answer, what: str) -> None:
        """check_status, with the error body read within bounds (64 KiB is plenty for a message)."""
        if resp.status_code < 400:
            return
        try:
            detail = detail_of(json.loads(self._read(resp, what, 64 * 1024)))
        except (GatewayError, ValueError, RecursionError, UnicodeDecodeError):
            detail = ""
        check_status(resp, what, detail)

    def submit(self, api_name: str, data: list[Any], session_hash: str | None) -> str:
        """POST /call/<api>: the job's event id. Without a session_hash Gradio files the job under
        its event id, still a session of its own (a hash breaks the stream on 4.20-6.17)."""
        what = f"call {api_name}"
        body: dict[str, Any] = {"data": data}
        if session_hash is not None:
            body["session_hash"] = session_hash
        answer = self.post_json(f"/call/{api_name.lstrip('/')}", body, what)
        event_id = answer.get("event_id") if isinstance(answer, dict) else None
        if not isinstance(event_id, str):
            raise UpstreamError(f"The Gradio app gave no event id ({what}).")
        return event_id

    def open_events(self, api_name: str, event_id: str) -> Any:
        """The job's event stream (GET /call/<api>/<event_id>)."""
        return self.open_stream(f"/call/{api_name.lstrip('/')}/{event_id}", f"call {api_name}")

    def post_json(self, path: str, body: dict[str, Any], what: str, *, app_errors: bool = False) -> Any:
        """POST a JSON body to a path under the API prefix; the parsed answer. With app_errors,
        a 500 whose body is `{"error": …}` (how /run/predict reports the app's exception) is an
        answer too."""
        with mapped_errors(what):
            payload = json.dumps(body, allow_nan=False).encode()
            resp = self._send("POST", self.url(path), payload, stream=True, hot=True)
            if app_errors and resp.status_code == 500:
                answer = json.loads(self._read(resp, what))
                if isinstance(answer, dict) and "error" in answer:
                    return answer
                check_status(resp, what, detail_of(answer))
            self._check(resp, what)
            return json.loads(self._read(resp, what))

    def open_stream(self, path: str, what: str) -> Any:
        """A GET whose body is an event stream: the lean client's response, or urllib3's. What
        reads it needs nothing more, and an open stream then keeps no request, cookie jar or
        second copy of the headers."""
        with mapped_errors(what):
            resp = self._send("GET", self.url(path), stream=True, hot=True)
            self._check(resp, what)
        if isinstance(resp, lean.Response):
            resp.gateway_encoding = resp.headers.get("content-encoding")
            resp.gateway_limit = self.max_bytes
            resp.headers = lean.NO_HEADERS      # checked: an open stream keeps none (0.8 KiB each)
            return resp
        raw = resp.raw
        raw.gateway_encoding = resp.headers.get("Content-Encoding")   # inflated by iter_events, within bounds
        raw.gateway_limit = self.max_bytes
        return raw

    def _send(self, method: str, url: str, body: bytes | None = None, *, stream: bool = False,
              hot: bool = False, timeout: tuple[float, float] | None = None) -> Answer:
        """A call to the app. A hot one (the job's submit and its event stream) takes the lean
        client where the connection is direct (lean.LeanClient.route); the others, and a hot
        one through a proxy or to an IDNA host, go through the session's own adapter.

        Session.request spends about 0.2 ms of CPU per call (measured by bench/) merging
        settings, preparing the request, running hooks and keeping cookies, none of which
        changes what these calls send: the session's headers are merged once per Gradio, the
        proxies, TLS settings, pools, stale-connection retry and exceptions are the adapter's,
        as with Session.request. A redirect is resent through Session.request, which follows
        it and drops credentials on the way to another host. `timeout` replaces the Gradio's own.
        """
        timeout = timeout or self.timeout
        if hot:
            route = self._lean_route()
            if route is not None and url.startswith(route.origin):
                return self._send_lean(route, method, url, body, stream)
        if not url.isascii():          # an IDNA host or path: let requests prepare it
            resp = self._through_session(method, url, body, stream, timeout)
            return self._redirected(resp, method, url, body, stream, timeout) if resp.is_redirect else resp
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = requote_uri(url)
        prepared.headers = self._sent_headers.copy()
        if body is not None:
            prepared.headers["Content-Type"] = "application/json"
            prepared.headers["Content-Length"] = str(len(body))
            prepared.body = body
        session = self.session
        resp = session.get_adapter(prepared.url).send(prepared, stream=stream, timeout=timeout,
                                                      verify=session.verify, cert=session.cert,
                                                      proxies=session.proxies)
        if resp.is_redirect:
            return self._redirected(resp, method, url, body, stream, timeout)
        return resp

    def _lean_route(self) -> lean.Route | None:
        """Where the lean client sends this app's hot calls; None when they go through requests
        (no lean client, a proxy, an IDNA host, a header requests would refuse)."""
        if self._route is _UNROUTED:
            client = getattr(self.session, "lean", None)
            self._lean_fields = lean.header_lines(dict(self._sent_headers.items()))
            self._route = client.route(self.base_url) if client is not None and self._lean_fields is not None \
                else None
        return self._route

    def _send_lean(self, route: lean.Route, method: str, url: str, body: bytes | None,
                   stream: bool) -> Answer:
        target = requote_uri(url[len(route.origin):]) or "/"
        head = lean.request_head(method, target, route, self._lean_fields or "",
                                 len(body) if body is not None else None)
        resp = self.session.lean.send(route, (head + body) if body is not None else head, method,
                                      self.timeout, url)
        if resp.is_redirect:           # today's rule, through requests: the app's own host only
            return self._redirected(resp, method, url, body, stream, self.timeout)
        return resp

    def _redirected(self, resp: Answer, method: str, url: str, body: bytes | None,
                    stream: bool, timeout: tuple[float, float]) -> requests.Response:
        """Follow a redirect on the app's own host only (CONTRACT §11): a 307 to elsewhere must
        not carry the prompt or the credential there, nor its answer come back as the app's."""
        target = requests.compat.urljoin(url, resp.headers.get("Location", ""))
        resp.close()
        here, there = urlsplit(url), urlsplit(target)
        same_host = there.hostname == here.hostname and there.port == here.port and \
            there.scheme in (here.scheme, "https")
        if not same_host or getattr(self, "_hops", 0) >= 3:
            raise RedirectRefused("The Gradio app redirected to another host; the gateway does not follow "
                                  "an app's redirect off its own host.")
        self._hops = getattr(self, "_hops", 0) + 1
        try:
            if resp.status_code == 303 or resp.status_code in (301, 302) and method == "POST":
                method, body = "GET", None
            return self._send(method, target, body, stream=stream, timeout=timeout)
        finally:
            self._hops -= 1

    def _through_session(self, method: str, url: str, body: bytes | None, stream: bool,
                         timeout: tuple[float, float]) -> requests.Response:
        headers = dict(self.headers, **({"Content-Type": "application/json"} if body is not None else {}))
        return self.session.request(method, url, data=body, headers=headers, timeout=timeout,
                                    stream=stream, allow_redirects=False)

    def cancel(self, event_id: str, session_hash: str | None, fn_index: int | None, path: str = "/cancel") -> None:
        """Best effort: the job may have ended already. `/cancel` on /call apps, `/reset` on the
        queues of 3.x and 4.x (which read the fields they know and ignore the others).

        Sent like every other call (CONTRACT §11): a redirect is followed on the app's own host
        only, and the answer is closed unread, since nothing in it changes what the gateway does;
        a hostile app's gzip bomb or endless body there costs nothing."""
        body = {"event_id": event_id, "session_hash": session_hash, "fn_index": fn_index}
        payload = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        with contextlib.suppress(Exception):
            self._send("POST", self.url(path), payload, stream=True, timeout=CANCEL_TIMEOUT).close()

    def upload(self, name: str, content: bytes, mime: str) -> str:
        what = "upload"
        with mapped_errors(what):
            resp = self.session.post(self.url("/upload"), headers=self.headers, timeout=self.timeout,
                                     files={"files": (name, content, mime)}, stream=True, allow_redirects=False)
            if resp.is_redirect:
                resp.close()
                raise UpstreamError("The Gradio app redirected the upload; the gateway does not follow it.")
            self._check(resp, what)
            paths = json.loads(self._read(resp, what, 1024 * 1024))
        if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
            raise UpstreamError("The Gradio app did not accept the uploaded file.")
        return paths[0]


def _reader(raw: Any) -> Callable[[], bytes]:
    """The next piece of a streaming body as it arrives (b"" at its end), chunked or not, raw.

    A lean answer reads whatever one recv gets; an urllib3 answer (a proxy's) gives a chunked
    body (what Gradio sends) chunk by chunk and an unchunked one (an event stream passed on by
    an HTTP/1.0 proxy) by read1. Pieces are at most READ_SIZE, so one huge chunk is never held
    whole, and nothing is decoded here: bounded.Decoded inflates piece by piece.
    """
    if isinstance(raw, lean.Response):
        return raw.read_piece
    if getattr(raw, "chunked", True):
        chunks = raw.read_chunked(READ_SIZE, decode_content=False)
        return lambda: next(chunks, b"")
    return lambda: raw.read1(READ_SIZE)


def _complete_lines(buffer: bytearray, data: bytes, limit: int) -> list[bytes]:
    """The lines `data` completes, taken off `buffer`; each byte is scanned once, however small
    the reads."""
    scan_from = len(buffer)
    buffer += data
    lines, start = [], 0
    while (end := buffer.find(b"\n", scan_from)) >= 0:
        lines.append(bytes(buffer[start:end]))
        start = scan_from = end + 1
    del buffer[:start]
    if len(buffer) > limit:
        raise UpstreamError("The Gradio app sent an oversized event (over MAX_UPSTREAM_BYTES).")
    return lines


def iter_events(resp: Any, what: str) -> Iterator[Event]:
    """Parse a Gradio job's text/event-stream into Events, none over MAX_UPSTREAM_BYTES.

    One generator reads, inflates, splits and parses, rather than a generator for each step:
    while a stream waits for its app, every generator level between the reader and the socket
    is a C frame more on the stack gevent saves for each waiting greenlet (bench/: memory per
    open stream). Every MiB that arrives yields a heartbeat: an app that sends fast never makes
    a read wait (so the worker answers others meanwhile), and a long event still arriving is a
    sign of life for the idle timeout (without it a large final snapshot arriving slowly looked
    like an idle app).
    """
    limit = getattr(resp, "gateway_limit", MAX_EVENT_BYTES)
    decoded = Decoded(getattr(resp, "gateway_encoding", None), "event stream")
    read = _reader(resp)
    buffer = bytearray()
    kind, data_lines, size, since_yield = "message", [], 0, 0
    with mapped_errors(what):
        while piece := read():
            for data in decoded.feed(piece):
                for line in _complete_lines(buffer, data, limit):
                    text = line.rstrip(b"\r").decode("utf-8")
                    if text == "":
                        if data_lines or kind == "heartbeat":
                            raw = "\n".join(data_lines)
                            yield Event(kind, fastjson.loads(raw) if raw and raw != "null" else None)
                        kind, data_lines, size = "message", [], 0
                    elif text.startswith("event:"):
                        kind = text[6:].strip()
                    elif text.startswith("data:"):
                        data_lines.append(text[5:].lstrip(" "))
                        size += len(text)
                        if size > limit:
                            raise UpstreamError("The Gradio app sent an oversized event (over MAX_UPSTREAM_BYTES).")
            since_yield += len(piece)
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                cooperate()
                yield Event("heartbeat", None)


def release(resp: Any, events: Iterator[Event]) -> bool:
    """After `complete`: read the end of the stream Gradio sends with it, so the connection goes
    back to the pool instead of costing a new connect next time. Anything else aborts it."""
    try:
        for _ in events:
            break
        else:
            resp.release_conn()  # the body was read to its end: the connection is reusable
            return True
    except Exception:  # noqa: BLE001 - a connection we could not reuse is simply closed
        pass
    abort(resp)
    return False


def _socket_of(resp: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The response's socket: its pooled connection's, or, for a `Connection: close` answer
    (which urllib3 detaches from the connection), the one under http.client's file."""
    connection = getattr(resp, "connection", None)
    if connection is not None and getattr(connection, "sock", None) is not None:
        return connection.sock
    fp = getattr(getattr(resp, "_fp", None), "fp", None)
    raw = getattr(fp, "raw", None)
    return getattr(raw, "_sock", None)


def abort(resp: Any) -> None:
    """Close a streaming response now, from any greenlet or thread.

    Shutting the socket down wakes a reader blocked on it; closing the event
    stream is also what makes Gradio stop the job.
    """
    if resp is None:
        return
    if isinstance(resp, lean.Response):
        resp.shutdown()
        return
    with contextlib.suppress(Exception):
        sock = _socket_of(resp)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        resp.close()
