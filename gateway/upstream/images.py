"""image_url parts -> bytes: data URLs decoded, http(s) URLs fetched with care."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import mimetypes
import socket
from typing import Any, Callable
from urllib.parse import unquote_to_bytes, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import InvalidRequest
from .protocol import mapped_errors

PARAM = "messages"


def _too_big(limit: int) -> InvalidRequest:
    return InvalidRequest(f"An image is larger than the limit of {limit} bytes.", param=PARAM)


def decode_data_url(url: str, limit: int) -> tuple[bytes, str]:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise InvalidRequest("An image data URL is malformed.", param=PARAM)
    mime = header.split(";")[0] or "application/octet-stream"
    if len(payload) * 3 // 4 > limit + 3:
        raise _too_big(limit)
    try:
        content = (base64.b64decode(payload, validate=True) if header.endswith(";base64")
                   else unquote_to_bytes(payload))
    except (binascii.Error, ValueError):
        raise InvalidRequest("An image data URL has invalid base64.", param=PARAM) from None
    if len(content) > limit:
        raise _too_big(limit)
    return content, mime


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
                timeout: tuple[float, float]) -> tuple[bytes, str]:
    """The bytes and MIME type of an image_url."""
    if url.startswith("data:"):
        return decode_data_url(url, limit)
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
            body = bytearray()
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise _too_big(limit)
            mime = resp.headers.get("Content-Type", "").split(";")[0].strip()
    mime = mime or mimetypes.guess_type(parts.path)[0] or "application/octet-stream"
    return bytes(body), mime


def check_image_count(messages: list[Any], limit: int) -> None:
    """400 naming the first image_url part past MAX_IMAGES_PER_REQUEST (CONTRACT §3)."""
    seen = 0
    for i, message in enumerate(messages):
        parts = message.content if isinstance(message.content, list) else ()
        for j, part in enumerate(parts):
            seen += part.type == "image_url"
            if seen > limit:
                raise InvalidRequest(f"A request may carry at most {limit} images "
                                     f"(MAX_IMAGES_PER_REQUEST).", param=f"messages[{i}].content[{j}]",
                                     code="too_many_images")


def file_name(mime: str, index: int) -> str:
    return f"image{index}{mimetypes.guess_extension(mime) or '.bin'}"


class UploadOnce:
    """upload(url) for one request: each distinct URL fetched and uploaded once, numbered in order.

    200 parts naming one URL are one fetch and one upload; the same FileData goes with each.
    """

    def __init__(self, upload: Callable[[str, int], dict[str, Any]]) -> None:
        self._upload = upload
        self._done: dict[str, dict[str, Any]] = {}

    def __call__(self, url: str) -> dict[str, Any]:
        if url not in self._done:
            self._done[url] = self._upload(url, len(self._done) + 1)
        return self._done[url]
