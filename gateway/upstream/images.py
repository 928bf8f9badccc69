"""image_url parts -> bytes: data URLs decoded, http(s) URLs fetched with care."""
from __future__ import annotations

import binascii
import ipaddress
import mimetypes
import socket
import time
from typing import Any, Callable
from urllib.parse import unquote_to_bytes, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..concurrency import cooperate
from ..errors import InvalidRequest
from .protocol import mapped_errors

PARAM = "messages"
Reserve = Callable[[int], None]
B64_STEP = 256 * 1024           # characters decoded between two turns of the others (a multiple of 4)


def _too_big(limit: int) -> InvalidRequest:
    return InvalidRequest(f"An image is larger than the limit of {limit} bytes.", param=PARAM)


def decode_data_url(url: str, limit: int, reserve: Reserve = lambda size: None) -> tuple[bytes, str]:
    """The bytes and MIME type of a data URL; reserve(size) is told the most it will hold. The
    payload is decoded a slice at a time, never copied whole: the URL can be the whole 10 MiB
    body, and 40 such requests at once took a gigabyte (issue 12: 9)."""
    comma = url.find(",")
    if comma < 0:
        raise InvalidRequest("An image data URL is malformed.", param=PARAM)
    header = url[5:comma]
    mime = header.split(";")[0] or "application/octet-stream"
    encoded = header.endswith(";base64")
    size = (len(url) - comma - 1) * 3 // 4 if encoded else len(url) - comma - 1   # at most, decoded
    if encoded and size > limit + 3:
        raise _too_big(limit)
    reserve(size)
    try:
        content = _b64decode(url, comma + 1) if encoded else unquote_to_bytes(url[comma + 1:])
    except (binascii.Error, ValueError):
        raise InvalidRequest("An image data URL has invalid base64.", param=PARAM) from None
    if len(content) > limit:
        raise _too_big(limit)
    return content, mime


def _b64decode(text: str, start: int) -> bytes:
    """text[start:] decoded 256 KiB at a time, letting other greenlets run in between: 9 MB took
    a blocked worker 0.05-0.1 s, and 40 such requests arrive together. Strict: the alphabet
    only, and padding only at the very end."""
    padding = text.find("=", start)
    if padding >= 0 and padding < len(text) - 2:
        raise binascii.Error("padding before the end")
    pieces = []
    for at in range(start, len(text), B64_STEP):
        pieces.append(binascii.a2b_base64(text[at:at + B64_STEP], strict_mode=True))
        cooperate()
    return b"".join(pieces)


def _refuse_private() -> InvalidRequest:
    return InvalidRequest("Image URLs may not point at loopback, private or link-local addresses.",
                          param=PARAM)


def _is_public(address: str) -> bool:
    addr = ipaddress.ip_address(address.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def _public_host(host: str, port: int) -> None:
    """Refuse hosts that resolve to loopback, private, link-local or reserved addresses."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequest(f"The image host '{host}' cannot be resolved.", param=PARAM) from None
    if not all(_is_public(info[4][0]) for info in infos):
        raise _refuse_private()


class _PublicPeerOnly:
    """Checks the address actually connected to, so a second DNS answer (rebinding) cannot
    lead the fetch to a private address that the check before it refused."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if not _is_public(sock.getpeername()[0]):
            sock.close()
            raise _refuse_private()
        return sock


class _PublicHTTPConnection(_PublicPeerOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeerOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """An adapter whose connections may only reach public addresses."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def guard_image_session(session: requests.Session) -> requests.Session:
    """Make session refuse private peers. Through a proxy the peer is the proxy, which resolves
    names itself: there only the check before the fetch applies."""
    if not session.proxies:
        adapter = PublicOnlyAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def fetch_image(session: requests.Session, url: str, *, limit: int, allow_private: bool,
                timeout: tuple[float, float], deadline: float,
                reserve: Reserve = lambda size: None) -> tuple[bytes, str]:
    """The bytes and MIME type of an image_url; reserve(size) is told the most it is about to
    hold, before it holds it. A host trickling the image is cut off at the deadline."""
    if url.startswith("data:"):
        return decode_data_url(url, limit, reserve)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("image_url must be a data URL or an http(s) URL.", param=PARAM)
    if not allow_private:
        _public_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    with mapped_errors("image fetch"):
        # No redirects: a redirect could lead to an address the check above refused.
        with session.get(url, timeout=timeout, stream=True, allow_redirects=False) as resp:
            if resp.status_code != 200:
                raise InvalidRequest(f"The image URL answered HTTP {resp.status_code}.", param=PARAM)
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_big(limit)
            reserve(int(declared) if declared.isdigit() else limit)
            body = bytearray()
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise _too_big(limit)
                if time.monotonic() > deadline:
                    raise InvalidRequest("The image URL did not send the image within the request's "
                                         "time (UPSTREAM_TOTAL_TIMEOUT).", param=PARAM)
            mime = resp.headers.get("Content-Type", "").split(";")[0].strip()
    mime = mime or mimetypes.guess_type(parts.path)[0] or "application/octet-stream"
    return bytes(body), mime


def check_image_count(messages: list[Any], limit: int) -> int:
    """The number of image_url parts; 400 naming the first past MAX_IMAGES_PER_REQUEST (CONTRACT §3)."""
    seen = 0
    with_parts = [i for i, message in enumerate(messages) if type(message.content) is list]
    for i in with_parts:
        for j, part in enumerate(messages[i].content):
            seen += part.type == "image_url"
            if seen > limit:
                raise InvalidRequest(f"A request may carry at most {limit} images "
                                     f"(MAX_IMAGES_PER_REQUEST).", param=f"messages[{i}].content[{j}]",
                                     code="too_many_images")
    return seen


def file_name(mime: str, index: int) -> str:
    return f"image{index}{mimetypes.guess_extension(mime) or '.bin'}"
