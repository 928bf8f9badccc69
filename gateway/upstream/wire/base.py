"""What every protocol family's job has in common, and the queue messages 3.x and 4.x share."""
from __future__ import annotations

from typing import Any, Iterator

from ... import fastjson
from ...concurrency import cooperate, within
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


class DiffWork:
    """What applying output diffs costs, charged edit by edit (CONTRACT §11).

    An edit's JSON is a few bytes, its cost is what it moves or copies: "add" and "delete" in
    a list move the elements after the index, "append" copies the string or list it extends.
    200,000 `["add", [0], 0]` in one message were 9.8 s of a blocked worker at a few MB. One
    message may cost at most twice MAX_UPSTREAM_BYTES (its edits touch each output at most once
    when an app is honest, and the outputs are at most its first snapshot plus what the diffs
    add: two limits); past that it is a 502. Across messages, an honest app's appends cost the
    length of what they extend each time, as much as reading the snapshot they make, which
    every consumer of a snapshot does anyway: the worker yields every EDITS_PER_YIELD edits or
    WORK_PER_YIELD units, so that cost never holds the worker up.
    """

    EDITS_PER_YIELD = 2048
    WORK_PER_YIELD = 8 * 1024 * 1024          # elements moved or characters copied: a few ms

    def __init__(self, limit: int) -> None:
        self.limit = 2 * limit
        self.message = 0
        self.edits = 0
        self.since_yield = 0

    def start_message(self) -> None:
        self.message = 0

    def charge(self, units: int) -> None:
        self.message += units
        self.since_yield += units
        self.edits += 1
        if self.message > self.limit:
            raise UpstreamError("The Gradio app sent output diffs too costly to apply (one message's edits "
                                "move or copy over twice MAX_UPSTREAM_BYTES).")
        if self.since_yield >= self.WORK_PER_YIELD or self.edits % self.EDITS_PER_YIELD == 0:
            self.since_yield = 0
            cooperate()


def apply_diff(value: Any, diff: Any, work: DiffWork | None = None) -> Any:
    """Apply one output's diff of the sse_v2+ queues ([[action, path, value], …]) in place.

    gradio_client.utils.apply_diff does the same but deep-copies the whole output for every
    event, quadratic over a long stream (CONTRACT §11), and would make gradio_client a runtime
    dependency for twenty lines; this edits in place, checks every step of a hostile diff and
    charges each edit's real cost to `work`.
    """
    if not isinstance(diff, list):
        raise UpstreamError("The Gradio app sent a malformed output diff.")
    work = work or DiffWork(MAX_ANSWER_BYTES)
    for edit in diff:
        if not (isinstance(edit, list) and len(edit) == 3 and isinstance(edit[1], list)):
            raise UpstreamError("The Gradio app sent a malformed output diff.")
        action, path, new = edit
        try:
            value = _edit(value, path, action, new, work)
        except (LookupError, TypeError, ValueError):
            raise UpstreamError("The Gradio app sent an output diff that does not fit its output.") from None
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list)) else 1


def _edit(target: Any, path: list[Any], action: str, new: Any, work: DiffWork) -> Any:
    if not path:
        if action == "replace":
            work.charge(1)
            return new
        if action == "append":
            work.charge(_size(target) + _size(new))
            return target + new
        raise ValueError(action)
    work.charge(len(path))
    parent = target
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = new
    elif action == "append":
        work.charge(_size(parent[last]) + _size(new))
        parent[last] = parent[last] + new
    elif action == "add":
        if isinstance(parent, list):
            work.charge(len(parent))
            parent.insert(int(last), new)
        else:
            parent[last] = new
    elif action == "delete":
        if isinstance(parent, list):
            work.charge(len(parent))
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
        self.work = DiffWork(limit)

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
                self.work.start_message()
                data = [apply_diff(old, diff, self.work) for old, diff in zip(self.outputs, data)]
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
