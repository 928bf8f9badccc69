"""JSON on the hot path: orjson where its answer is the json module's, the json module elsewhere.

orjson parses and writes JSON several times faster than the json module (a C parser and writer
against the json module's Python layers around its C scanner; the stream's JSON was 5 % of a
worker's samples). Where the two would differ, the json module decides, so behaviour is what it
was:
- parsing: orjson refuses NaN and Infinity literals and escapes of lone surrogates, which the
  json module accepts; those documents, and every invalid one, are parsed again by the json
  module, which gives its value or raises its own error, as before. orjson reads an integer past
  64 bits as a float, without an error: a document where it may have done so is parsed again by
  the json module too;
- writing: orjson refuses lone surrogates and non-string keys (then the json module writes them)
  and would write NaN as null where the json module writes NaN. Nothing the gateway writes holds
  a NaN: its numbers are counts, times, and sampling settings validated into a finite range.
orjson's output is compact and UTF-8, what the gateway's stream writer asked of the json module.
"""
from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider


INT64 = 2 ** 63               # orjson reads an integer of this size or more (negative: less) as a float
# Every ASCII digit marked 1, every other byte 0: a run of 19 digits is then a run of 19 ones,
# which bytes' C search finds in ~1 ns a byte.
_DIGIT_MARKS = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_LONG_DIGITS = b"\x01" * 19


def _may_have_lost_digits(value: Any, data: bytes | bytearray | str) -> bool:
    """Whether orjson may have read an integer past 64 bits as a float.

    A document of few values (a 9 MB data URL is one) is looked through: a float that large is
    the sign. One of many values for its size (550,000 empty messages) is scanned instead for a
    run of 19 digits. A regex, \\d{19}, over every document took 60 ms a MiB: a 9.3 MB body
    blocked the worker 0.57 s before orjson's 0.05 s (issue 12: 9).
    """
    budget, stack = 64 + len(data) // 1024, [value]
    while stack:
        budget -= 1
        if budget < 0:
            raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
            return _LONG_DIGITS in raw.translate(_DIGIT_MARKS)
        item = stack.pop()
        if type(item) is float:
            if abs(item) >= INT64:
                return True
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.values())
    return False


def loads(data: bytes | bytearray | str) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    return json.loads(data) if _may_have_lost_digits(value, data) else value


def dumps(value: Any) -> str:
    """Compact, non-ASCII kept: json.dumps(value, separators=(",", ":"), ensure_ascii=False)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# Types Flask's provider writes its own way (HTTP dates, asdict): orjson raises, Flask writes them.
_FLASK_TYPES = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class Provider(DefaultJSONProvider):
    """Flask's JSON (the non-stream answers) through orjson: compact, keys sorted as Flask sorts
    them, non-ASCII as UTF-8 rather than escapes (the same JSON values)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.keys() - {"separators"} or kwargs.get("separators") != (",", ":"):
            return super().dumps(obj, **kwargs)          # pretty-printed (debug) or asked for: Flask's own
        try:
            return orjson.dumps(obj, option=_FLASK_TYPES | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)).decode()
        except TypeError:
            return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s) if not kwargs else super().loads(s, **kwargs)
