"""The API descriptions of real Gradio servers of every generation, read without a server.

tests/data/generations/<version>/<app>/ holds the /config and /info that real Gradio 3.50.2 to
6.31.0 served for two Space-style apps (tests/generations/space_apps.py): the ChatInterface with
additional inputs, the two-step Blocks chat and, where the version has it, a multimodal
ChatInterface. The live tests (test_generations.py) call the same apps through gunicorn.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import UpstreamError, UpstreamQuota
from gateway.schemas import ChatRequest, Message, Part
from gateway.upstream.apps import CALL, SSE_QUEUE, WS, load_app
from gateway.upstream.mapping import build_plan
from gateway.upstream.runner import error_from_event
from gateway.upstream.wire.base import DiffWork, QueueMessages, apply_diff

DATA = Path(__file__).parent / "data" / "generations"
VERSIONS = ["3.50.2", "4.19.2", "4.20.1", "4.44.1", "5.50.0", "6.17.3", "6.31.0"]
FAMILY = {"3.50.2": WS, "4.19.2": SSE_QUEUE, "4.20.1": SSE_QUEUE, "4.44.1": SSE_QUEUE,
          "5.50.0": SSE_QUEUE, "6.17.3": CALL, "6.31.0": CALL}


class Captured:
    """Answers get_json from the captured files, as the Gradio class would from the server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.base_url = "http://app/"
        self.api_prefix = ""

    def config(self) -> Any:
        return json.loads((self.folder / "config.json").read_text())

    def get_json(self, path: str, what: str, *, prefixed: bool = True) -> Any:
        return json.loads((self.folder / "info.json").read_text())


def app_of(version: str, name: str) -> Any:
    return load_app("http://app/", Captured(DATA / version / name))


def chat(*messages: tuple[str, str], **fields: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role, text) for role, text in messages], **fields)


def no_upload(url: str) -> dict[str, Any]:
    raise AssertionError("no upload expected")


@pytest.mark.parametrize("version", VERSIONS)
def test_each_generation_is_spoken_in_its_own_protocol_and_prefix(version: str) -> None:
    app = app_of(version, "chat_settings")
    assert app.protocol == FAMILY[version]
    assert app.api_prefix == ("/gradio_api" if version >= "5" else "")
    assert app.fills_state == (version == "6.31.0")      # 6.18+ fills hidden State inputs itself
    assert app.session_in_call == (version == "6.31.0")  # a session_hash in /call breaks 4.20-6.17


@pytest.mark.parametrize("version", VERSIONS)
def test_chat_interface_settings_map_by_label_where_info_has_no_names(version: str) -> None:
    app = app_of(version, "chat_settings")
    plan = build_plan(app, None, None, chat(("system", "Be brief."), ("user", "hi"),
                                            max_tokens=5000, temperature=0.25), no_upload)
    assert set(plan.roles) >= {"message", "system", "max_tokens", "temperature"}
    sent = app.inputs_for(plan.endpoint, plan.data)
    kinds = [k for k in plan.endpoint.input_kinds] if not app.fills_state else \
        [k for k in plan.endpoint.input_kinds if k != "state"]
    assert len(sent) == len(kinds)
    assert [v for v, k in zip(sent, kinds) if k == "state"] == [None] * kinds.count("state")
    values = [v for v, k in zip(sent, kinds) if k != "state"]
    assert values == ["hi", "Be brief.", 2048, 0.25]          # clamped to the slider, an int stays an int
    assert isinstance(values[2], int)


@pytest.mark.parametrize("version", VERSIONS)
def test_two_step_chat_runs_the_first_step_then_its_follower(version: str) -> None:
    app = app_of(version, "two_step")
    plan = build_plan(app, None, None, chat(("user", "earlier"), ("assistant", "ok"), ("user", "now")),
                      no_upload)
    assert plan.endpoint.follower is not None and plan.answer is plan.endpoint.follower
    assert plan.answer.generator
    first_inputs = app.inputs_for(plan.endpoint, plan.data)
    assert first_inputs[0] == "now"
    history = first_inputs[1]
    if version < "5":
        assert history == [["earlier", "ok"]]                # [user, bot] pairs
    else:
        assert [m["role"] for m in history] == ["user", "assistant"]
    # The follower gets the Chatbot the first step gave back.
    chatbot = [["earlier", "ok"], ["now", None]]
    outputs = ["", chatbot]
    assert plan.follower_inputs(app, outputs) == [chatbot]


@pytest.mark.parametrize("version", ["4.44.1", "5.50.0", "6.17.3", "6.31.0"])
def test_multimodal_chat_interface_takes_files(version: str) -> None:
    app = app_of(version, "multimodal")
    uploaded = []

    def upload(url: str) -> dict[str, Any]:
        uploaded.append(url)
        return {"path": "/tmp/x.png", "meta": {"_type": "gradio.FileData"}}
    request = ChatRequest(model="m", messages=[Message("user", [Part("text", text="what"),
                                                                Part("image_url", url="data:image/png;base64,AA==")])])
    plan = build_plan(app, None, None, request, upload)
    message = plan.data[plan.endpoint.parameters.index(next(
        p for p in plan.endpoint.parameters if p.get("parameter_name") == "message"))]
    assert message["text"] == "what" and len(message["files"]) == 1 and uploaded


def test_state_outputs_are_not_part_of_the_answer() -> None:
    app = app_of("3.50.2", "chat_settings")
    plan = build_plan(app, None, None, chat(("user", "hi")), no_upload)
    # 3.x sends the State's value (the whole history) beside the answer.
    assert plan.outputs(["the answer", [["hi", "the answer"]]]) == ("the answer", "")


def test_sse_v2_diffs_rebuild_the_outputs() -> None:
    """The 4.19.2 two-step trace: a full first snapshot, then appends into the Chatbot pair."""
    messages = QueueMessages(diffs=True)
    events = [messages.read({"msg": "process_generating", "output": {"data": data}, "success": True})
              for data in ([[["hi", "bot:"]]], [[["append", [0, 1], " hi"]]], [[["append", [0, 1], " there"]]])]
    assert events[-1].data == [[["hi", "bot: hi there"]]]
    done = messages.read({"msg": "process_completed", "output": {"data": [[["hi", "bot: hi there"]]]},
                          "success": True})
    assert done.kind == "complete"


def test_diffs_cannot_grow_an_answer_past_the_limit() -> None:
    """Each event is bounded where it is read; many small appends are bounded here (CONTRACT §11)."""
    messages = QueueMessages(diffs=True, limit=10_000)
    messages.read({"msg": "process_generating", "output": {"data": ["start"]}, "success": True})
    append = {"msg": "process_generating", "output": {"data": [[["append", [], "x" * 100]]]}, "success": True}
    for _ in range(80):                                  # 8,000 characters and their diffs' framing
        messages.read(append)
    with pytest.raises(UpstreamError, match="MAX_UPSTREAM_BYTES"):
        for _ in range(40):
            messages.read(append)
    assert len(messages.outputs[0]) < 10_000


def test_costly_diffs_in_one_message_are_an_upstream_error_in_linear_time() -> None:
    """200,000 inserts at the front of a list are 3 MB of JSON and quadratic work (9.8 s before):
    each edit is charged what it moves, and one message may cost twice the limit."""
    messages = QueueMessages(diffs=True, limit=4 * 1024 * 1024)
    messages.read({"msg": "process_generating", "output": {"data": [[]]}, "success": True})
    flood = {"msg": "process_generating", "output": {"data": [[["add", [0], 0]] * 200_000]}, "success": True}
    started = time.process_time()
    with pytest.raises(UpstreamError, match="too costly"):
        messages.read(flood)
    assert time.process_time() - started < 0.5


def test_appends_in_one_message_are_charged_what_they_copy() -> None:
    work = DiffWork(limit=1000)                          # 2,000 units a message
    apply_diff("", [["append", [], "x" * 900]], work)  # 900: fine
    with pytest.raises(UpstreamError, match="too costly"):
        apply_diff("x" * 900, [["append", [], "y"]] * 3, work)   # 901 + 902: over


def test_many_messages_of_honest_appends_are_applied() -> None:
    messages = QueueMessages(diffs=True, limit=1024 * 1024)
    messages.read({"msg": "process_generating", "output": {"data": [""]}, "success": True})
    for _ in range(20_000):
        event = messages.read({"msg": "process_generating", "output": {"data": [[["append", [], "tok "]]]},
                               "success": True})
    assert event.data == ["tok " * 20_000]


@pytest.mark.parametrize("diff", [5, [["append"]], [["append", [9], "x"]], [["explode", [], 1]],
                                  [["append", [], 5]]])
def test_malformed_diffs_are_upstream_errors(diff: Any) -> None:
    with pytest.raises(UpstreamError):
        apply_diff(["text"], diff)


def test_diff_actions() -> None:
    assert apply_diff("ab", [["append", [], "c"]]) == "abc"
    assert apply_diff({"a": [1]}, [["add", ["a", 0], 0], ["replace", ["b"], 2]]) == {"a": [0, 1], "b": 2}
    assert apply_diff([1, 2], [["delete", [0], None]]) == [2]


def test_queue_errors_and_quota_of_versions_without_titles() -> None:
    messages = QueueMessages(diffs=False)
    event = messages.read({"msg": "process_completed", "success": False, "output": {
        "error": "'You have exceeded your GPU quota (60s requested vs. 56s left). Try again in 0:01:00'"}})
    error = error_from_event(event.data)
    assert isinstance(error, UpstreamQuota) and error.retry_after == 60
    assert "'" not in error.message
    plain = error_from_event("404: Session not found.")
    assert plain.status_code == 502 and "Session not found" in plain.message


def test_a_one_step_blocks_chat_of_3x_is_found_by_its_fn_index() -> None:
    """`msg.submit(respond, [msg, chatbot], [msg, chatbot])` on 3.50.2: no api_name, no chain."""
    app = app_of("3.50.2", "one_step")
    plan = build_plan(app, None, None, chat(("user", "earlier"), ("assistant", "ok"), ("user", "now")),
                      no_upload)
    assert plan.endpoint.api_name is None and plan.endpoint.follower is None
    assert plan.data == ["now", [["earlier", "ok"]]]
    assert plan.outputs(["", [["earlier", "ok"], ["now", "the answer"]]]) == ("the answer", "")
