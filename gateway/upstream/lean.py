"""The two hot calls of every completion (the job's submit and its event stream) on a lean client.

Why not urllib3 there: bench/'s profile put 47 % of a non-stream request's CPU in requests and
urllib3 for these two calls (the adapter, URL parsing, Retry objects, CaseInsensitiveDict, and
http.client parsing every answer's headers through the `email` package). Here the request is
one header block built once per app, and geventhttpclient's C parser (http-parser) reads the
status line, the headers and the chunked framing. Only its parser is used: its client's pool
blocks once `size` sockets are in use, takes timeouts per pool, never checks an idle
connection before reusing it, and its read() waits for a whole block, which an event stream
must not.

Only direct connections come here (`LeanClient.route`): no proxy for the URL, an ASCII host,
header values that cannot smuggle a line. Proxies, IDNA hosts, redirects (protocol.py resends a
3xx through requests, on the app's own host only) and every cold call stay on requests. The
sockets are the `socket` module's, so gevent-native in the workers (which patch before the app
is imported) and plain blocking ones in tests and the CLI.

Exceptions (protocol.mapped_errors turns them into GatewayErrors):

    LeanError
    ├── NotConnected      no connection was made: refused, no such name, no route  -> 503
    │   └── ConnectTimedOut                                                        -> 504
    ├── TLSFailed         the handshake failed: untrusted, wrong host, not TLS     -> 503
    ├── Dropped           the connection ended before the answer's head was whole  -> 503
    ├── ReadTimedOut      no byte for the idle timeout                              -> 504
    └── BrokenAnswer      a malformed head, or the body broke off                  -> 502
"""
from __future__ import annotations

import os
import select
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

from geventhttpclient._parser import HTTPParseError, HTTPResponseParser
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy

from .bounded import READ_SIZE

MAX_HEAD = 64 * 1024          # status line and headers; Gradio sends under 1 KiB
REDIRECTS = (301, 302, 303, 307, 308)
UNSAFE_IN_HEADERS = ("\r", "\n", "\0")

try:                          # the OS's poll(), not gevent's, which would build watchers
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a runtime dependency
    _poll = select.poll


def is_idle_and_open(sock: Any) -> bool:
    """Whether a pooled idle connection can be reused: readable while idle means the peer
    closed it (or sent what it should not). One non-blocking poll() of the OS."""
    poller = _poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


class LeanError(Exception):
    def __init__(self, url: str, why: str = "") -> None:
        super().__init__(why or type(self).__name__)
        self.url = url                # failure_reason names the host from it


class NotConnected(LeanError):
    pass


class ConnectTimedOut(NotConnected):
    pass


class TLSFailed(LeanError):
    pass


class Dropped(LeanError):
    pass


class ReadTimedOut(LeanError):
    pass


class BrokenAnswer(LeanError):
    pass


class _NoAnswer(Exception):
    """The connection ended before any byte of the answer: on a pooled one, a stale connection."""


@dataclass(frozen=True)
class Route:
    """Where a direct request goes: the pool's key and the request's fixed parts."""

    scheme: str
    host: str
    port: int
    origin: str                       # scheme://netloc, what a URL of this route starts with
    host_header: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


class HostPool:
    """The idle connections to one (scheme, host, port): last in, first out, at most `size`.

    Never blocks: a request that finds no idle connection opens one, as urllib3's pool does
    with block=False. Lists' pop and append need no lock under the GIL or gevent.
    """

    __slots__ = ("size", "idle")

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: list[Any] = []

    def take(self) -> Any | None:
        while self.idle:
            sock = self.idle.pop()
            try:
                if is_idle_and_open(sock):
                    return sock
            except (OSError, ValueError):
                pass
            _close(sock)              # the app closed it meanwhile: never send on it
        return None

    def give(self, sock: Any) -> None:
        if len(self.idle) < self.size:
            self.idle.append(sock)
        else:
            _close(sock)

    def clear(self) -> None:
        while self.idle:
            _close(self.idle.pop())


def _send_all(sock: Any, request: bytes, url: str) -> None:
    try:
        sock.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        raise _NoAnswer() from None           # the app had closed it: nothing of this request was read
    except (socket.timeout, TimeoutError):
        _close(sock)
        raise ReadTimedOut(url) from None
    except OSError as exc:
        _close(sock)
        raise Dropped(url, str(exc)) from exc


def _close(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass


class LeanClient:
    """The process's direct connections: one HostPool per (scheme, host, port), at most
    `pools` of them (the least recently used is dropped), TLS as requests would verify it."""

    def __init__(self, session: Any, *, pools: int, size: int) -> None:
        self.session = session        # its proxies, trust_env, verify and cert decide as for requests
        self.max_pools = pools
        self.size = size
        self.pools: OrderedDict[tuple[str, str, int], HostPool] = OrderedDict()
        self._tls: tuple[Any, ssl.SSLContext] | None = None

    def route(self, url: str) -> Route | None:
        """The route of a URL this client may take; None for one that must go through requests."""
        if not url.isascii() or not url.startswith(("http://", "https://")):
            return None                   # IDNA hosts: requests prepares them
        parts = urlsplit(url)
        if not parts.hostname or "@" in parts.netloc or self._proxy_for(url):
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return Route(parts.scheme, parts.hostname, port, f"{parts.scheme}://{parts.netloc}", parts.netloc)

    def _proxy_for(self, url: str) -> str | None:
        """The proxy requests would use for url: Session.merge_environment_settings, then
        HTTPAdapter's select_proxy. The environment counts only where the session trusts it."""
        session = self.session
        proxies: dict[str, str] = {}
        if session.trust_env:
            proxies.update(get_environ_proxies(url, no_proxy=None))
        proxies.update({k: v for k, v in session.proxies.items() if v is not None})
        return select_proxy(url, proxies)

    def send(self, route: Route, request: bytes, method: str, timeouts: tuple[float, float],
             url: str) -> Response:
        """Send one request and read its answer's head. A pooled connection that turns out dead
        before any byte of the answer (the app closed it as the request went out) is replaced
        once, for a POST too: urllib3 checked a pooled connection before reuse and opened a new
        one when it was dead, and a keep-alive server closes an idle connection only between
        requests, so the one sent on it was not read. Never after a timeout."""
        pool = self._pool(route)
        for attempt in (0, 1):
            sock = pool.take()
            reused = sock is not None
            if sock is None:
                sock = self._connect(route, timeouts[0], url)
            sock.settimeout(timeouts[1])
            try:
                _send_all(sock, request, url)
                return Response(sock, pool, method, url)
            except _NoAnswer:
                _close(sock)
                if reused and attempt == 0:
                    continue
                raise Dropped(url, "the connection closed before an answer") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool(self, route: Route) -> HostPool:
        key = route.key
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = HostPool(self.size)
            while len(self.pools) > self.max_pools:
                self.pools.popitem(last=False)[1].clear()
        elif len(self.pools) > 1:
            self.pools.move_to_end(key)
        return pool

    def _connect(self, route: Route, timeout: float, url: str) -> Any:
        try:
            sock = socket.create_connection((route.host, route.port), timeout=timeout)
        except (socket.timeout, TimeoutError) as exc:
            raise ConnectTimedOut(url, "timed out connecting") from exc
        except OSError as exc:
            raise NotConnected(url, str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as urllib3 does
            if route.scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=route.host)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            _close(sock)
            raise TLSFailed(url, str(exc)) from exc
        except (socket.timeout, TimeoutError) as exc:
            _close(sock)
            raise ConnectTimedOut(url, "timed out in the TLS handshake") from exc
        except OSError as exc:
            _close(sock)
            raise Dropped(url, str(exc)) from exc
        return sock

    def _context(self) -> ssl.SSLContext:
        """The CA bundle requests would use: session.verify (a path, or False), else
        DEFAULT_CA_BUNDLE_PATH (certifi's); hostname checks on, SNI set by wrap_socket."""
        settings = (self.session.verify, self.session.cert)
        if self._tls is not None and self._tls[0] == settings:
            return self._tls[1]
        verify, cert = settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # the ssl module's: gevent's once patched
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION
        context.set_alpn_protocols(["http/1.1"])
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            where = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
            if os.path.isdir(where):
                context.load_verify_locations(capath=where)
            else:
                context.load_verify_locations(cafile=where)
        if cert:
            certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
            context.load_cert_chain(certfile, keyfile)
        self._tls = (settings, context)
        return context

    def close(self) -> None:
        for pool in self.pools.values():
            pool.clear()
        self.pools.clear()


def request_head(method: str, target: str, route: Route, fields: str, length: int | None) -> bytes:
    """The request's bytes up to its body; `fields` are the app's header lines, built once."""
    sized = f"Content-Type: application/json\r\nContent-Length: {length}\r\n" if length is not None else ""
    return f"{method} {target} HTTP/1.1\r\nHost: {route.host_header}\r\n{fields}{sized}\r\n".encode("latin-1")


def header_lines(headers: dict[str, Any]) -> str | None:
    """The header block of an app's requests; None when a name or value could break a line
    (requests would refuse such a header: it goes that way and fails there)."""
    lines = []
    for name, value in headers.items():
        if value is None:
            continue
        value = value if isinstance(value, str) else str(value)
        if not name or ":" in name or " " in name or any(c in name or c in value for c in UNSAFE_IN_HEADERS):
            return None
        if not (name.isascii() and value.isascii()):
            return None
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


class Headers(dict):
    """An answer's headers, by lowercase name; repeated fields joined with ", " as urllib3 does."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> Any:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response(HTTPResponseParser):
    """One answer on one connection: the head read at once, the body piece by piece.

    Small on purpose, as an open event stream keeps it for as long as it lasts: no read buffer
    (each recv is parsed at once; what it held of the body waits in `_body` until read), the
    headers in one dict. A recv asks for at most READ_SIZE bytes, so no piece is larger.
    """

    __slots__ = ("sock", "pool", "url", "method", "status_code", "headers", "complete", "_body",
                 "_field", "_value", "_head_bytes", "_head_done", "_extra",
                 "gateway_encoding", "gateway_limit")

    def __init__(self, sock: Any, pool: HostPool | None, method: str, url: str) -> None:
        super().__init__()
        self.sock, self.pool, self.method, self.url = sock, pool, method, url
        self.status_code = 0
        self.headers = Headers()
        self.complete = self._head_done = self._extra = False
        self._body: list[bytes] = []
        self._field, self._value = "", None
        self._head_bytes = 0
        self.gateway_encoding: str | None = None
        self.gateway_limit: int | None = None
        self._read_head()

    # ------------------------------------------------------------ the parser's callbacks

    def _on_message_begin(self) -> None:
        if self._head_done:
            self._extra = True        # a second answer on one request: never reuse this connection

    def _on_status(self, _: str) -> None:
        pass

    def _on_header_field(self, text: str) -> None:
        if self._value is not None:   # a new field: the last one is whole
            self._flush()
        self._field += text

    def _on_header_value(self, text: str) -> None:
        self._value = text if self._value is None else self._value + text

    def _flush(self) -> None:
        name, value = self._field.lower(), (self._value or "").strip()
        seen = dict.get(self.headers, name)
        self.headers[name] = value if seen is None else f"{seen}, {value}"
        self._field, self._value = "", None

    def _on_headers_complete(self) -> bool:
        if self._field:
            self._flush()
        self._head_done = True
        return self.method == "HEAD"

    def _on_body(self, data: bytearray) -> None:
        self._body.append(data)

    def _on_message_complete(self) -> None:
        self.complete = True

    # ------------------------------------------------------------ reading

    def _read_head(self) -> None:
        first = True
        while not self._head_done:
            data = self._recv(before_head=first)
            if not data:
                if first:
                    raise _NoAnswer()
                self._broken("the connection closed in the middle of the answer's head", Dropped)
            first = False
            self._head_bytes += len(data)
            self._feed(data)
            if not self._head_done and self._head_bytes > MAX_HEAD:
                self._broken("the answer's head is oversized", BrokenAnswer)
        self.status_code = self.get_code()

    def _recv(self, before_head: bool = False) -> bytes:
        sock = self.sock
        if sock is None:
            raise BrokenAnswer(self.url, "the connection was closed")
        try:
            return sock.recv(READ_SIZE)
        except (socket.timeout, TimeoutError):
            self.close()
            raise ReadTimedOut(self.url) from None
        except (ConnectionResetError, BrokenPipeError):
            if before_head:
                raise _NoAnswer() from None
            self.close()
            raise Dropped(self.url, "the app reset the connection") from None
        except OSError as exc:
            self.close()
            raise (Dropped if not self._head_done else BrokenAnswer)(self.url, str(exc)) from None

    def _feed(self, data: bytes) -> None:
        try:
            self.feed(data)
        except HTTPParseError as exc:
            self._broken(f"malformed HTTP ({exc})", BrokenAnswer)

    def _broken(self, why: str, kind: type[LeanError]) -> None:
        self.close()
        raise kind(self.url, why)

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers

    def pieces(self) -> Iterator[bytes]:
        """The body's bytes (chunked framing removed, content encoding kept) as they arrive,
        whatever one read gets and never more than READ_SIZE; at its end the connection goes
        back to the pool."""
        body = self._body
        while True:
            while body:
                yield body.pop(0)
            if self.complete:
                self.release_conn()
                return
            data = self._recv()
            self._feed(data)          # b"": the end of the connection, which ends an unsized body
            if not data and not self.complete:
                self._broken("the connection closed in the middle of the answer", BrokenAnswer)

    def release_conn(self) -> None:
        """The answer read to its end goes back to its pool (when the app keeps it alive);
        anything else is closed."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self._body.clear()
        if self.complete and not self._extra and self.pool is not None and self.should_keep_alive():
            self.pool.give(sock)
        else:
            _close(sock)

    close = release_conn

    def shutdown(self) -> None:
        """Wake a reader blocked on this connection, from any greenlet, and close it."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            _close(sock)
