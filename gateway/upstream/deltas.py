"""Cumulative snapshots -> deltas, with stop sequences enforced by the gateway."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning)


# A tail that may still turn into something else in the next snapshot: the start of an
# HTML tag (<details> becomes reasoning) or of an entity (&amp; becomes &).
UNSETTLED = re.compile(r"(?:<[A-Za-z/][A-Za-z]{0,9}|<|&#?[A-Za-z0-9]{0,10})$")


class SnapshotDiffer:
    """Turns full-text snapshots into what is new, cut at the first stop sequence.

    Text that could still change meaning is held back until the next snapshot
    settles it: the start of a stop sequence (so a stop split across two
    snapshots is still caught and nothing after it is ever sent), and the start
    of an HTML tag or entity (which the next snapshot may turn into reasoning or
    unescape). The final snapshot releases everything.
    """

    def __init__(self, stop: list[str] | None = None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self._sent_content = ""
        self._sent_reasoning = ""
        self.stopped = False

    def feed(self, content: str, reasoning: str = "", final: bool = False) -> Delta:
        if self.stopped:
            return Delta()
        cut = min((i for i in (content.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            content, self.stopped, final = content[:cut], True, True
        if not final:
            content = content[:len(content) - self._held(content, self.stop)]
            reasoning = reasoning[:len(reasoning) - self._held(reasoning, [])]
        new_content = self._new(self._sent_content, content)
        new_reasoning = self._new(self._sent_reasoning, reasoning)
        self._sent_content += new_content
        self._sent_reasoning += new_reasoning
        return Delta(new_content, new_reasoning)

    @staticmethod
    def _held(text: str, stops: list[str]) -> int:
        """Length of the longest tail of text that is unsettled or starts some stop sequence."""
        held = 0
        for stop in stops:
            for size in range(min(len(stop) - 1, len(text)), held, -1):
                if stop.startswith(text[-size:]):
                    held = size
                    break
        match = UNSETTLED.search(text)
        return max(held, len(match.group(0)) if match else 0)

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
