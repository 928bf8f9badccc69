"""Gradio's HTTP API over `requests`: config, info, call, events, cancel, upload.

This is the one boundary where exceptions of `requests` become GatewayErrors
(like httpx's map_httpcore_exceptions); nothing above it sees a foreign one.
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
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from ..errors import (GatewayError, UpstreamApiChanged, UpstreamError, UpstreamQuota,
                      UpstreamTimeout, UpstreamUnauthorized, UpstreamUnavailable)

log = logging.getLogger("gateway.upstream")
MAX_EVENT_BYTES = 64 * 1024 * 1024
RETRY_IN = re.compile(r"(?:try again in|retry in)\s+(?:(\d+):)?(\d+):(\d+)", re.I)
RETRY_SECONDS = re.compile(r"(?:try again in|retry in|retry after)\s+(\d+)\s*(?:s\b|sec|second)", re.I)


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
    host = urlsplit(getattr(request, "url", "") or "").hostname or "the host"
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


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Translate `requests` and decoding failures into the gateway's error tree, saying why."""
    try:
        yield
    except GatewayError:
        raise
    except requests.exceptions.ConnectTimeout as exc:
        raise _logged(UpstreamTimeout(f"Timed out connecting to the Gradio app ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.ReadTimeout:
        raise UpstreamTimeout(f"The Gradio app stopped answering ({what}).") from None
    except requests.exceptions.ProxyError as exc:
        raise _logged(UpstreamUnavailable(f"The proxy refused the connection ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.SSLError as exc:
        raise _logged(UpstreamUnavailable(f"TLS failed talking to the Gradio app ({what}){_because(exc)}."),
                      what) from None
    except requests.exceptions.ConnectionError as exc:
        if _never_connected(exc):
            raise _logged(UpstreamUnreachable(f"The Gradio app is unreachable ({what}){_because(exc)}."),
                          what) from None
        raise _logged(UpstreamUnavailable(f"The connection to the Gradio app broke ({what}){_because(exc)}."),
                      what) from None
    except urllib3.exceptions.ReadTimeoutError:      # from raw reads of an event stream
        raise UpstreamTimeout(f"The Gradio app stopped answering ({what}).") from None
    except urllib3.exceptions.HTTPError:             # the stream broke mid-answer
        raise UpstreamError(f"The connection to the Gradio app broke ({what}).") from None
    except (requests.exceptions.RequestException, OSError) as exc:
        if isinstance(exc, ValueError):   # requests' JSONDecodeError is both kinds: it is bad JSON
            raise UpstreamError(f"The Gradio app sent a malformed answer ({what}).") from None
        raise UpstreamError(f"The connection to the Gradio app failed ({what}){_because(exc)}.") from None
    except (ValueError, UnicodeDecodeError):
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


def check_status(resp: requests.Response, what: str) -> None:
    """Raise the error the contract names for a non-2xx answer of an app."""
    status = resp.status_code
    if status < 400:
        return
    detail = _detail(resp)
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


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        value = body.get("error") or body.get("detail") or ""
        return value if isinstance(value, str) else ""
    return ""


class Gradio:
    """One Gradio app at base_url, spoken to over a shared requests.Session."""

    def __init__(self, session: requests.Session, base_url: str, headers: dict[str, str],
                 *, connect_timeout: float, read_timeout: float, api_prefix: str = "/gradio_api") -> None:
        self.session = session
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.headers = headers
        self._sent_headers = CaseInsensitiveDict(session.headers)   # what Session.request would merge
        self._sent_headers.update(headers)
        self.timeout = (connect_timeout, read_timeout)
        self.api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""

    def url(self, path: str) -> str:
        return self.base_url + (self.api_prefix + path).lstrip("/")

    def get_json(self, path: str, what: str, *, prefixed: bool = True) -> Any:
        url = self.url(path) if prefixed else self.base_url + path.lstrip("/")
        with mapped_errors(what):
            resp = self.session.get(url, headers=self.headers, timeout=self.timeout)
            check_status(resp, what)
            return resp.json()

    def submit(self, api_name: str, data: list[Any], session_hash: str) -> str:
        what = f"call {api_name}"
        with mapped_errors(what):
            body = json.dumps({"data": data, "session_hash": session_hash}, allow_nan=False).encode()
            resp = self._send("POST", self.url(f"/call/{api_name.lstrip('/')}"), body)
            check_status(resp, what)
            event_id = resp.json().get("event_id")
        if not isinstance(event_id, str):
            raise UpstreamError(f"The Gradio app gave no event id ({what}).")
        return event_id

    def open_events(self, api_name: str, event_id: str) -> urllib3.BaseHTTPResponse:
        """The job's event stream, as urllib3's response: what reads it needs nothing more, and
        an open stream then keeps no request, cookie jar or second copy of the headers alive."""
        what = f"call {api_name}"
        with mapped_errors(what):
            resp = self._send("GET", self.url(f"/call/{api_name.lstrip('/')}/{event_id}"), stream=True)
            check_status(resp, what)
        return resp.raw

    def _send(self, method: str, url: str, body: bytes | None = None, *, stream: bool = False) -> requests.Response:
        """One of the two calls every completion makes, through the session's own adapter.

        Session.request spends about 0.2 ms of CPU per call (measured by bench/) merging
        settings, preparing the request, running hooks and keeping cookies, none of which
        changes what these calls send: the session's headers are merged once per Gradio, the
        proxies, TLS settings, pools, stale-connection retry and exceptions are the adapter's,
        as with Session.request. A redirect is resent through Session.request, which follows
        it and drops credentials on the way to another host.
        """
        if not url.isascii():          # an IDNA host or path: let requests prepare it
            return self._through_session(method, url, body, stream)
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = requote_uri(url)
        prepared.headers = self._sent_headers.copy()
        if body is not None:
            prepared.headers["Content-Type"] = "application/json"
            prepared.headers["Content-Length"] = str(len(body))
            prepared.body = body
        session = self.session
        resp = session.get_adapter(prepared.url).send(prepared, stream=stream, timeout=self.timeout,
                                                      verify=session.verify, cert=session.cert,
                                                      proxies=session.proxies)
        if resp.is_redirect:
            resp.close()
            return self._through_session(method, url, body, stream)
        return resp

    def _through_session(self, method: str, url: str, body: bytes | None, stream: bool) -> requests.Response:
        headers = dict(self.headers, **({"Content-Type": "application/json"} if body is not None else {}))
        return self.session.request(method, url, data=body, headers=headers, timeout=self.timeout,
                                    stream=stream)

    def cancel(self, event_id: str, session_hash: str, fn_index: int) -> None:
        """Best effort: the job may have ended already."""
        with contextlib.suppress(Exception):
            self.session.post(self.url("/cancel"), headers=self.headers, timeout=(2, 2),
                              json={"event_id": event_id, "session_hash": session_hash,
                                    "fn_index": fn_index}).close()

    def upload(self, name: str, content: bytes, mime: str) -> str:
        what = "upload"
        with mapped_errors(what):
            resp = self.session.post(self.url("/upload"), headers=self.headers, timeout=self.timeout,
                                     files={"files": (name, content, mime)})
            check_status(resp, what)
            paths = resp.json()
        if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
            raise UpstreamError("The Gradio app did not accept the uploaded file.")
        return paths[0]


def _arrived(raw: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The bytes of a streaming body as they arrive, chunked or not.

    A chunked body (what Gradio sends) comes chunk by chunk from read_chunked; an unchunked
    one (an event stream passed on by an HTTP/1.0 proxy) is read with read1: whatever one
    read gets.
    """
    if getattr(raw, "chunked", True):
        yield from raw.read_chunked(None, decode_content=True)
        return
    while True:
        chunk = raw.read1(64 * 1024)
        if not chunk:
            return
        yield chunk


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split arriving bytes into lines; each byte is scanned once, however small the reads."""
    buffer = bytearray()
    for chunk in chunks:
        scan_from = len(buffer)
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", scan_from)) >= 0:
            yield bytes(buffer[start:end])
            start = scan_from = end + 1
        del buffer[:start]
        if len(buffer) > MAX_EVENT_BYTES:
            raise UpstreamError("The Gradio app sent an oversized event.")


def iter_events(resp: urllib3.BaseHTTPResponse, what: str) -> Iterator[Event]:
    """Parse a Gradio job's text/event-stream into Events."""
    kind, data_lines = "message", []
    with mapped_errors(what):
        for line in _lines(_arrived(resp)):
            text = line.rstrip(b"\r").decode("utf-8")
            if text == "":
                if data_lines or kind == "heartbeat":
                    raw = "\n".join(data_lines)
                    yield Event(kind, json.loads(raw) if raw and raw != "null" else None)
                kind, data_lines = "message", []
            elif text.startswith("event:"):
                kind = text[6:].strip()
            elif text.startswith("data:"):
                data_lines.append(text[5:].lstrip(" "))


def release(resp: urllib3.BaseHTTPResponse, events: Iterator[Event]) -> bool:
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


def abort(resp: urllib3.BaseHTTPResponse | None) -> None:
    """Close a streaming response now, from any greenlet or thread.

    Shutting the socket down wakes a reader blocked on it; closing the event
    stream is also what makes Gradio stop the job.
    """
    if resp is None:
        return
    with contextlib.suppress(Exception):
        sock = resp.connection.sock  # type: ignore[attr-defined]
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        resp.close()
