"""Credentials cut out of what the gateway sends back (CONTRACT §5): an app may echo what it got.

What is found, for each credential the request sent upstream (the operator's HF_TOKEN, a
user's token, an X-IP-Token):

- the token itself, in any letter case (`HF_…`, `hf_…`);
- each character of it also as an HTML entity (`&#104;`, `&#x68;`) or percent-escape (`%68`),
  in any mix;
- its base64 (standard and URL-safe alphabets), at each of the three alignments it can have
  inside a longer encoded text (what `base64("Bearer " + token)` contains).

Not found: other encodings (hex, rot13, reversed, split by other characters, base64 of an
upper-cased token, ...). An app that transforms the token on purpose can still leak it; this
catches the echoes that happen by accident (a debug dump, an error page, a header echo).
"""
from __future__ import annotations

import base64
import functools
import html
import re
from urllib.parse import unquote

REDACTED = "[redacted]"
WITHHELD = "The message was withheld: it contained a credential."
MIN_SECRET = 8            # shorter values are not treated as secrets (they would match everywhere)


def _char_unit(ch: str) -> str:
    """One character of the token, plain (any case), as an entity, or percent-escaped."""
    code = ord(ch)
    forms = {re.escape(ch), f"&\\#0*{code};", f"&\\#x0*{code:x};", f"%{code:02x}"}
    if ch.lower() != ch.upper():
        forms |= {f"&\\#0*{ord(ch.swapcase())};", f"&\\#x0*{ord(ch.swapcase()):x};",
                  f"%{ord(ch.swapcase()):02x}"}
    return "(?:" + "|".join(sorted(forms)) + ")"


def _base64_needles(secret: str) -> list[str]:
    """The parts of base64 that any text containing secret encodes to, one per alignment."""
    data = secret.encode()
    needles = []
    for skip in range(3):
        body = data[skip:]
        body = body[:len(body) - len(body) % 3]
        if len(body) >= 6:
            encoded = base64.b64encode(body).decode()
            needles += [encoded, encoded.replace("+", "-").replace("/", "_")]
    return needles


def _nested_prefix(units: list[str], partial: str = "") -> str:
    """A regex for any non-empty prefix of the units in sequence (optionally ending in a partial unit)."""
    tail = ""
    for unit in reversed(units[1:]):
        tail = f"(?:{unit}{tail}{'|' + partial if partial else ''})?"
    return f"(?:{units[0]}{tail}|{partial})" if partial else units[0] + tail


@functools.lru_cache(maxsize=64)
def _patterns(secrets: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], int]:
    """(any whole form, any prefix of a form at the end, the longest form) for these secrets."""
    whole, prefixes, longest = [], [], 0
    partial_entity = r"(?:&(?:\#(?:x?[0-9a-f]*)?)?|%[0-9a-f]?)"
    for secret in secrets:
        units = [_char_unit(ch) for ch in secret]
        whole.append("(?i:" + "".join(units) + ")")
        prefixes.append("(?i:" + _nested_prefix(units, partial_entity) + ")")
        longest = max(longest, 12 * len(secret))
        for needle in _base64_needles(secret):
            whole.append(re.escape(needle))
            prefixes.append(_nested_prefix([re.escape(c) for c in needle]))
    return re.compile("|".join(whole)), re.compile("(?:" + "|".join(prefixes) + r")\Z"), longest


def _usable(secrets: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET}))


def redact_message(message: str, *secrets: str | None) -> str:
    """A message with every form of the secrets cut out; withheld whole if one hides deeper."""
    usable = _usable(secrets)
    if not usable:
        return message
    whole = _patterns(usable)[0]
    message = whole.sub(REDACTED, message)
    decoded = html.unescape(html.unescape(unquote(message)))
    if whole.search(decoded) or any(s.lower() in decoded.lower() for s in usable):
        return WITHHELD
    return message


class StreamRedactor:
    """Redacts growing snapshots of one text; what might still become a secret is held back.

    Work per snapshot is proportional to the new text: what was settled before (everything
    before a possible start of a secret) is not scanned again while the snapshot extends it.
    """

    def __init__(self, secrets: tuple[str | None, ...]) -> None:
        self._whole, self._partial, self._span = _patterns(_usable(secrets))
        self._raw = ""            # the settled part of the last raw snapshot
        self._clean = ""          # the same, redacted

    @staticmethod
    def needed(secrets: tuple[str | None, ...]) -> bool:
        return bool(_usable(secrets))

    def feed(self, raw: str) -> tuple[str, int]:
        """(the redacted snapshot, how many of its last characters may still become a secret)."""
        if not raw.startswith(self._raw):
            self._raw, self._clean = "", ""
        new = self._whole.sub(REDACTED, raw[len(self._raw):])
        tail = new[-self._span:]
        match = self._partial.search(tail)
        held = len(tail) - match.start() if match else 0
        settled = len(new) - held
        # The held tail holds no replacement, so it is the same text in raw and in new.
        self._raw = raw[:len(raw) - held]
        self._clean += new[:settled]
        return self._clean + new[settled:], held
