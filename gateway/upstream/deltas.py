"""Cumulative snapshots -> deltas, with stop sequences enforced by the gateway."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..concurrency import cooperate
from ..redaction import StreamRedactor


@dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning)


# A tail that may still turn into something else in the next snapshot: the start of an
# HTML tag (<details> becomes reasoning) or of an entity (&amp; becomes &).
UNSETTLED = re.compile(r"(?:<[A-Za-z/][A-Za-z]{0,9}|<|&#?[A-Za-z0-9]{0,10})$")
UNSETTLED_SPAN = 12       # the longest tail UNSETTLED can match
COOPERATE_EVERY = 1 << 16  # steps of Python-level scanning between two yields to other greenlets


def unsettled(text: str) -> int:
    """Length of the tail of text that is the start of a tag or an entity (only the tail is read)."""
    match = UNSETTLED.search(text[-UNSETTLED_SPAN:])
    return len(match.group(0)) if match else 0


class StopScanner:
    """Finds one stop sequence in text that grows by snapshots: Knuth-Morris-Pratt, fed only
    what is new, so a whole stream costs time linear in its text, however long the stop.

    `held` is the length of the longest tail of the text that starts the stop sequence. The
    failure table is built only as deep as the text ever matched, and a run of matching
    characters is compared 64 at a time; where nothing matches, str.find skips ahead.
    """

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self._fail = [0]          # _fail[q]: longest proper border of stop[:q + 1]
        self._k = 0
        self.held = 0
        self._fed = 0

    def _border(self, q: int) -> int:
        fail, stop, k = self._fail, self.stop, self._k
        while len(fail) <= q:
            i = len(fail)
            while k and stop[i] != stop[k]:
                k = fail[k - 1]
            if stop[i] == stop[k]:
                k += 1
            fail.append(k)
        self._k = k
        return fail[q]

    def find(self, text: str, extends: bool) -> int:
        """Where the stop starts in text, or -1. extends: text continues the text last fed."""
        stop, size = self.stop, len(self.stop)
        if not extends:               # rewritten text: search it whole, then resume near its end
            found = text.find(stop)
            if found >= 0:
                return found
            self.held, self._fed = 0, max(0, len(text) - size + 1)
        q, i, end, steps = self.held, self._fed, len(text), 0
        while i < end:
            steps += 1
            if steps % COOPERATE_EVERY == 0:
                cooperate()
            if q == 0:
                i = text.find(stop[0], i)
                if i < 0:
                    i = end
                    break
                q, i = 1, i + 1
            else:
                run = min(64, size - q, end - i)
                if run > 1 and text.startswith(stop[q:q + run], i):
                    q, i = q + run, i + run
                else:
                    char = text[i]
                    while q and stop[q] != char:
                        q = self._border(q - 1)
                    q, i = q + (stop[q] == char), i + 1
            if q == size:
                return i - size
        self.held, self._fed = q, i
        return -1


class SnapshotDiffer:
    """Turns full-text snapshots into what is new, cut at the first stop sequence.

    Text that could still change meaning is held back until the next snapshot
    settles it: the start of a stop sequence (so a stop split across two
    snapshots is still caught and nothing after it is ever sent), the start of
    an HTML tag or entity (which the next snapshot may turn into reasoning or
    unescape), and the start of a credential the app may be echoing (secrets:
    what the request sent upstream; every form of them becomes [redacted]). The
    final snapshot releases everything. Each snapshot costs time in proportion
    to what is new in it.
    """

    def __init__(self, stop: list[str] | None = None, secrets: tuple[str | None, ...] = ()) -> None:
        self.stop = [s for s in (stop or []) if s]
        self._scanners = [StopScanner(s) for s in self.stop]
        self._last = ""
        self._redact = (StreamRedactor(secrets), StreamRedactor(secrets)) \
            if StreamRedactor.needed(secrets) else None
        self._sent_content = ""
        self._sent_reasoning = ""
        self.stopped = False

    def feed(self, content: str, reasoning: str = "", final: bool = False) -> Delta:
        if self.stopped:
            return Delta()
        secret_content = secret_reasoning = 0
        if self._redact is not None:
            content, secret_content = self._redact[0].feed(content)
            reasoning, secret_reasoning = self._redact[1].feed(reasoning)
        cut, held = self._scan(content)
        if cut >= 0:
            content, self.stopped, final = content[:cut], True, True
        if not final:
            content = content[:len(content) - max(held, secret_content, unsettled(content))]
            reasoning = reasoning[:len(reasoning) - max(secret_reasoning, unsettled(reasoning))]
        new_content = self._new(self._sent_content, content)
        new_reasoning = self._new(self._sent_reasoning, reasoning)
        self._sent_content += new_content
        self._sent_reasoning += new_reasoning
        return Delta(new_content, new_reasoning)

    def _scan(self, content: str) -> tuple[int, int]:
        """(where the first stop sequence starts or -1, the longest tail that starts one)."""
        if not self._scanners:
            return -1, 0
        extends = content.startswith(self._last)
        self._last = content
        cut, held = -1, 0
        for scanner in self._scanners:
            found = scanner.find(content, extends)
            if found >= 0:
                cut = found if cut < 0 else min(cut, found)
            held = max(held, scanner.held)
        return cut, held

    @staticmethod
    def _new(sent: str, snapshot: str) -> str:
        if snapshot.startswith(sent):
            return snapshot[len(sent):]
        # The app rewrote earlier text: a stream cannot take it back, send what differs after the shared prefix.
        common = len(os.path.commonprefix([sent, snapshot]))
        return snapshot[common:] if len(snapshot) > len(sent) else ""

    @property
    def text(self) -> str:
        return self._sent_content


WORDS = re.compile(r"(?:\s*\S+){1,3}")
TO_WORD_END = re.compile(r"\S*")
MAX_PIECES = 256          # a pseudo-stream of any length is at most about this many chunks


def word_chunks(text: str, words: int = 3, max_pieces: int = MAX_PIECES) -> list[str]:
    """Cut text into pieces of a few words each, keeping every character (pseudo-streaming).

    A long text gets longer pieces (cut at a word end past len/max_pieces characters), so a
    4 MB answer is a few hundred chunks, not a million; every step is a C-level regex match.
    """
    pieces: list[str] = []
    least = -(-len(text) // max_pieces)
    few = WORDS if words == 3 else re.compile(r"(?:\s*\S+){1,%d}" % words)
    start = 0
    while start < len(text):
        match = few.match(text, start)
        end = match.end() if match and match.end() > start else len(text)
        if end - start < least:
            end = TO_WORD_END.match(text, min(start + least, len(text))).end()
        pieces.append(text[start:end])
        start = end
    return pieces
