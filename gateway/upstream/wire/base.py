"""What every protocol family's job has in common, and the queue messages 3.x and 4.x share."""
from __future__ import annotations

from typing import Any, Iterator

from ... import fastjson
from ...concurrency import within
from ...errors import UpstreamError, UpstreamUnavailable
from ..protocol import Event

RELEASE_WITHIN = 1.0      # seconds the end of a completed job's stream may take to arrive
MAX_ANSWER_BYTES = 32 * 1024 * 1024   # MAX_UPSTREAM_BYTES' default, for messages read without a Gradio


class Job:
    """One upstream job. Subclasses submit in __init__, read in events(), stop in close()."""

    what = "call"
    ended = False          # the job completed: nothing to cancel
    closed = False
    releasing = False      # release() is reading the stream's end: close() leaves it to finish
    resp: Any = None       # the job's event stream, where it is an HTTP response

    def events(self) -> Iterator[Event]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the job now (the client left, or an error): idempotent, from any greenlet.
        Subclasses return at once when `closed or releasing`."""
        self.closed = True

    def release(self) -> None:
        """After `complete`: read the end of the stream, which Gradio sends about 2 ms after the
        last event, so the connection goes back to the pool instead of costing a new connect
        (a TLS handshake, against a Space) next time. The answer has gone out by then: the
        client's run may close meanwhile (close() leaves a releasing job alone), and an app that
        never ends its stream costs at most RELEASE_WITHIN before the connection is dropped."""
        if self.ended and not self.closed and self.resp is not None:
            self.releasing = True
            try:
                kept = within(RELEASE_WITHIN, self._read_end, False)
            except Exception:  # noqa: BLE001 - a connection we could not reuse is simply closed
                kept = False
            finally:
                self.releasing = False
            if kept:
                self.closed = True
                return
        self.close()

    def _read_end(self) -> bool:
        """Read what follows the last event; True when the connection went back to its pool."""
        return False


def apply_diff(value: Any, diff: Any) -> Any:
    """Apply one output's diff of the sse_v2+ queues ([[action, path, value], …]) in place.

    gradio_client.utils.apply_diff does the same but deep-copies the whole output for every
    event, quadratic over a long stream (CONTRACT §11), and would make gradio_client a runtime
    dependency for twenty lines; this edits in place and checks every step of a hostile diff.
    """
    if not isinstance(diff, list):
        raise UpstreamError("The Gradio app sent a malformed output diff.")
    for edit in diff:
        if not (isinstance(edit, list) and len(edit) == 3 and isinstance(edit[1], list)):
            raise UpstreamError("The Gradio app sent a malformed output diff.")
        action, path, new = edit
        try:
            value = _edit(value, path, action, new)
        except (LookupError, TypeError, ValueError):
            raise UpstreamError("The Gradio app sent an output diff that does not fit its output.") from None
    return value


def _edit(target: Any, path: list[Any], action: str, new: Any) -> Any:
    if not path:
        if action == "replace":
            return new
        if action == "append":
            return target + new
        raise ValueError(action)
    parent = target
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = new
    elif action == "append":
        parent[last] = parent[last] + new
    elif action == "add":
        if isinstance(parent, list):
            parent.insert(int(last), new)
        else:
            parent[last] = new
    elif action == "delete":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise ValueError(action)
    return target


class QueueMessages:
    """The messages of Gradio's queue (3.x websocket, 4.x SSE): `estimation`, `process_starts`,
    `process_generating`, `process_completed`, `heartbeat`, … -> the seam's events."""

    def __init__(self, diffs: bool, limit: int = MAX_ANSWER_BYTES) -> None:
        self.diffs = diffs
        self.outputs: Any = None
        # Each event is bounded by MAX_UPSTREAM_BYTES where it is read, but diffs add up: what
        # they add to one job's outputs is counted (their JSON size, an upper bound) against the
        # same limit, so an app cannot grow an answer without end in small appends.
        self.limit = limit
        self.grown = 0

    def read(self, msg: Any) -> Event | None:
        """The event a message means; None for one that says nothing to the gateway."""
        if not isinstance(msg, dict):
            raise UpstreamError("The Gradio app sent a malformed queue message.")
        kind = msg.get("msg")
        output = msg.get("output") if isinstance(msg.get("output"), dict) else {}
        if kind == "heartbeat":
            return Event("heartbeat", None)
        if kind == "estimation":
            return Event("status", {"stage": "queue", "rank": msg.get("rank"),
                                    "queue_size": msg.get("queue_size"), "eta": msg.get("rank_eta")})
        if kind == "process_starts":
            return Event("status", {"stage": "processing", "eta": msg.get("eta")})
        if kind == "process_generating":
            if msg.get("success") is False:
                return Event("error", _error(output))
            data = output.get("data")
            if self.diffs and self.outputs is not None:
                if not isinstance(data, list) or not isinstance(self.outputs, list) \
                        or len(data) != len(self.outputs):
                    raise UpstreamError("The Gradio app sent a malformed output diff.")
                self.grown += len(fastjson.dumps(data))
                if self.grown > self.limit:
                    raise UpstreamError("The Gradio app sent an oversized answer (its output diffs add up "
                                        "to over MAX_UPSTREAM_BYTES).")
                data = [apply_diff(old, diff) for old, diff in zip(self.outputs, data)]
            self.outputs = data
            return Event("generating", data)
        if kind == "process_completed":
            if msg.get("success") and "error" not in output:
                return Event("complete", output.get("data"))
            return Event("error", _error(output))
        if kind == "queue_full":
            raise UpstreamUnavailable("The Gradio app's queue is full.", retry_after=10)
        if kind in ("unexpected_error", "server_stopped"):
            return Event("error", {"error": msg.get("message") or "The Gradio server stopped."})
        return None                    # log, progress, send_hash/send_data (the job's own), close_stream


def _error(output: dict[str, Any]) -> Any:
    error = output.get("error")
    if error is None and not output.get("title"):
        return None                    # the app hides its errors
    return {"error": error, "title": output.get("title")}
