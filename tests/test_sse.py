"""sse.frames: frames that are ready go out in one write; none waits for the next item."""
from __future__ import annotations

from typing import Any, Iterator

from gateway import sse
from gateway.errors import UpstreamTimeout


def test_ready_frames_are_written_together_and_end_with_done() -> None:
    writes = list(sse.frames([{"a": 1}, {"b": 2}, {"c": 3}], ready=lambda: True))
    assert writes == [b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c":3}\n\ndata: [DONE]\n\n']


def test_a_frame_goes_out_alone_when_the_next_item_is_not_there_yet() -> None:
    state = {"ready": True}
    pulled: list[Any] = []

    def items() -> Iterator[Any]:
        yield {"a": 1}
        state["ready"] = False       # the app has nothing more for now
        yield {"b": 2}
        pulled.append("c")           # would have waited here
        yield {"c": 3}

    writes = sse.frames(items(), ready=lambda: state["ready"])
    assert next(writes) == b'data: {"a":1}\n\ndata: {"b":2}\n\n'
    assert pulled == []              # the write came before the wait for "c"
    assert list(writes) == [b'data: {"c":3}\n\n', b"data: [DONE]\n\n"]


def test_an_error_after_gathered_frames_keeps_them_then_follows_them() -> None:
    def items() -> Iterator[Any]:
        yield {"a": 1}
        raise UpstreamTimeout("too slow")

    writes = list(sse.frames(items(), ready=lambda: True))
    assert len(writes) == 1
    assert writes[0].startswith(b'data: {"a":1}\n\ndata: {"error":')
    assert writes[0].endswith(b"data: [DONE]\n\n")


def test_without_ready_every_frame_is_its_own_write() -> None:
    assert list(sse.frames([{"a": 1}, {"b": 2}])) == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n',
                                                        b"data: [DONE]\n\n"]
