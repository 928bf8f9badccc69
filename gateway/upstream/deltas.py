"""Cumulative snapshots -> deltas, with stop sequences enforced by the gateway."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning)


class SnapshotDiffer:
    """Turns full-text snapshots into what is new, cut at the first stop sequence.

    Content that could be the start of a stop sequence is held back until the
    next snapshot shows it is not, so a stop split across two snapshots is
    still caught and nothing after it is ever sent.
    """

    def __init__(self, stop: list[str] | None = None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._sent_content = ""
        self._sent_reasoning = ""
        self.stopped = False

    def feed(self, content: str, reasoning: str = "", final: bool = False) -> Delta:
        if self.stopped:
            return Delta()
        new_reasoning = self._new(self._sent_reasoning, reasoning)
        self._sent_reasoning = reasoning if reasoning.startswith(self._sent_reasoning) else \
            self._sent_reasoning + new_reasoning
        cut = min((i for i in (content.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            content, self.stopped, final = content[:cut], True, True
        ready = content if final or not self.stop else content[:len(content) - self._held_suffix(content)]
        new_content = self._new(self._sent_content, ready)
        self._sent_content += new_content
        return Delta(new_content, new_reasoning)

    def _held_suffix(self, content: str) -> int:
        """Length of the longest tail of content that starts some stop sequence."""
        for size in range(min(self._hold, len(content)), 0, -1):
            tail = content[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

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


def word_chunks(text: str, words: int = 3) -> list[str]:
    """Cut text into pieces of a few words each, keeping every character (pseudo-streaming)."""
    pieces, count, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch.isspace() and i > 0 and not text[i - 1].isspace():
            count += 1
            if count == words:
                pieces.append(text[start:i])
                start, count = i, 0
    if start < len(text):
        pieces.append(text[start:])
    return pieces
