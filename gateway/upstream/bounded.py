"""Reading what an app sends, within MAX_UPSTREAM_BYTES counted after decompression (CONTRACT §11).

urllib3 decodes a `Content-Encoding` by itself, but a chunk of a few KiB can inflate into
gigabytes before anything looks at its size (a `gzip, gzip` /info of 3 KB took 5.8 GiB), and
json.loads of a whole body happens only once it is all in memory. Here the raw bytes are read and
inflated by zlib with `max_length`, piece by piece, so no piece is larger than READ_SIZE and no
document or event larger than the limit is ever held. Only gzip and deflate are asked for
(session.py) and accepted; identity needs no work.
"""
from __future__ import annotations

import zlib
from typing import Iterator

from ..concurrency import cooperate
from ..errors import UpstreamError

READ_SIZE = 64 * 1024
YIELD_EVERY = 1024 * 1024


class Inflater:
    """One Content-Encoding layer, inflated at most READ_SIZE bytes at a time."""

    def __init__(self, encoding: str) -> None:
        # 16 + MAX_WBITS: a gzip header; MAX_WBITS: zlib's; -MAX_WBITS: raw deflate (some servers).
        self.encoding = encoding
        self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        self.first = encoding == "deflate"

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self.obj.decompress(data, READ_SIZE)
            except zlib.error:
                if not self.first:
                    raise
                self.first = False       # "deflate" without the zlib header, as some servers send it
                self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self.first = False
            data = self.obj.unconsumed_tail
            if out:
                yield out
            if self.obj.eof:
                return


class Decoded:
    """The decoded bytes of a body whose raw bytes arrive in pieces; each piece yields control."""

    def __init__(self, content_encoding: str | None, what: str) -> None:
        names = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
        names = [e for e in names if e != "identity"]
        if any(e not in ("gzip", "x-gzip", "deflate") for e in names):
            raise UpstreamError(f"The Gradio app answered in an encoding the gateway does not read ({what}).")
        # Encodings are listed in the order they were applied: undo them last first.
        self.layers = [Inflater("gzip" if e == "x-gzip" else e) for e in reversed(names)]
        self.what = what

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self.layers:
            yield data
            return
        try:
            yield from self._through(0, data)
        except zlib.error:
            raise UpstreamError(f"The Gradio app sent a corrupt compressed answer ({self.what}).") from None

    def _through(self, depth: int, data: bytes) -> Iterator[bytes]:
        if depth == len(self.layers):
            yield data
            cooperate()                 # inflating is CPU work: let the worker answer others meanwhile
            return
        for piece in self.layers[depth].feed(data):
            yield from self._through(depth + 1, piece)


def read_limited(chunks: Iterator[bytes], content_encoding: str | None, limit: int, what: str) -> bytes:
    """A whole body of at most `limit` decoded bytes; UpstreamError past it."""
    decoded = Decoded(content_encoding, what)
    body = bytearray()
    next_yield = YIELD_EVERY
    for chunk in chunks:
        for piece in decoded.feed(chunk):
            body += piece
            if len(body) > limit:
                raise UpstreamError(f"The Gradio app sent an oversized answer ({what}; over MAX_UPSTREAM_BYTES).")
        if len(body) >= next_yield:           # a fast sender never makes a read wait: let others run
            next_yield += YIELD_EVERY
            cooperate()
    return bytes(body)
