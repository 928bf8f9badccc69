"""Snapshots -> deltas, and stop sequences enforced by the gateway, in streams too."""
from __future__ import annotations

import json
import time
from typing import Any

from gateway.upstream.deltas import Delta, SnapshotDiffer, word_chunks

# The respond app streams "You said: <message>" three characters at a time:
# "You", "You sa", "You said:", "You said: he", ...
HELLO = [{"role": "user", "content": "hello world"}]


def feed_all(differ: SnapshotDiffer, snapshots: list[str]) -> str:
    sent = [differ.feed(s).content for s in snapshots[:-1]]
    sent.append(differ.feed(snapshots[-1], final=True).content)
    return "".join(sent)


def sse_chunks(client: Any, **body: Any) -> list[dict[str, Any]]:
    resp = client.post("/v1/chat/completions", json={"model": "respond", "messages": HELLO, **body})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    lines = [line[6:] for line in resp.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_snapshots_become_only_what_is_new():
    differ = SnapshotDiffer()
    assert [differ.feed(s) for s in ("a", "a b", "a b c")] == [Delta("a"), Delta(" b"), Delta(" c")]


def test_a_stop_split_across_two_snapshots_is_caught_and_nothing_after_it_is_sent():
    differ = SnapshotDiffer(["STOP"])
    first = differ.feed("answer ST")
    second = differ.feed("answer STOP and more")
    assert (first.content, second.content, differ.stopped) == ("answer ", "", True)
    assert differ.feed("answer STOP and more and more", final=True) == Delta()


def test_a_held_back_prefix_that_turns_out_no_stop_is_sent_later():
    differ = SnapshotDiffer(["STOP"])
    assert feed_all(differ, ["go S", "go SO", "go SO far"]) == "go SO far"
    assert not differ.stopped


def test_the_earliest_of_several_stops_wins():
    assert feed_all(SnapshotDiffer(["zz", "b"]), ["a b c zz"]) == "a "


def test_reasoning_deltas_are_not_cut_by_stops():
    differ = SnapshotDiffer(["x"])
    assert differ.feed("", "think x twice") == Delta("", "think x twice")


def test_a_half_sent_entity_or_tag_waits_for_the_next_snapshot():
    differ = SnapshotDiffer()
    assert differ.feed("a &am").content == "a "
    assert differ.feed("a &amp; b <det").content == "&amp; b "
    assert differ.feed("a &amp; b <details>", final=True).content == "<details>"


def test_word_chunks_keep_every_character():
    text = "one two  three four\nfive six seven"
    assert "".join(word_chunks(text)) == text and len(word_chunks(text)) == 3


def test_stop_cuts_a_non_streamed_answer_with_finish_reason_stop(mapping_client):
    resp = mapping_client.post("/v1/chat/completions", json={"model": "respond", "messages": HELLO,
                                                              "stop": ["o w"]})
    choice = resp.get_json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("You said: hell", "stop")


def test_a_stop_split_across_upstream_snapshots_is_caught_in_a_stream(mapping_client):
    # "d: h" straddles the snapshots "You said:" and "You said: he".
    chunks = sse_chunks(mapping_client, stream=True, stop="d: h")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "You sai"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_a_stream_without_stop_delivers_the_whole_answer_in_several_deltas(mapping_client):
    deltas = [c["choices"][0]["delta"].get("content") for c in sse_chunks(mapping_client, stream=True)]
    pieces = [d for d in deltas if d]
    assert "".join(pieces) == "You said: hello world" and len(pieces) > 2


# ---------------------------------------------------------------- issue 12: linear time

def naive_held(text: str, stop: str) -> int:
    return next((n for n in range(min(len(stop) - 1, len(text)), 0, -1) if stop.startswith(text[-n:])), 0)


def test_the_stop_scanner_agrees_with_a_naive_search_on_every_snapshot():
    import random

    from gateway.upstream.deltas import StopScanner

    rng = random.Random(12)
    for _ in range(2_000):
        stop = "".join(rng.choice("ab") for _ in range(rng.randint(1, 8)))
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))
        scanner = StopScanner(stop)
        for end in sorted(rng.sample(range(len(text) + 1), min(4, len(text) + 1))):
            found = scanner.find(text[:end], extends=True)
            assert found == text[:end].find(stop), (stop, text[:end])
            if found >= 0:
                break
            assert scanner.held == naive_held(text[:end], stop), (stop, text[:end])


def test_long_stop_sequences_cost_time_linear_in_the_snapshots():
    """Finding 3: the held-back check sliced the text once per length of each stop, per snapshot."""
    text = "ab " * 5_400
    differ = SnapshotDiffer(["ab " * 2_000 + "X", "ba " * 2_000, "ab " * 1_999 + "aY", "b" * 6_000])
    started = time.process_time()
    sent = "".join(differ.feed(text[:end]).content for end in range(3, len(text), 3))
    sent += differ.feed(text, final=True).content
    assert sent == text
    assert time.process_time() - started < 1.0


def test_pseudo_streaming_cuts_any_text_into_a_bounded_number_of_pieces():
    """Finding 2: a 4 MB answer was 1.3 million pieces of three words."""
    text = "ab " * 1_400_000
    started = time.process_time()
    pieces = word_chunks(text)
    assert "".join(pieces) == text and len(pieces) <= 260
    assert time.process_time() - started < 0.5
    assert word_chunks("one two three four five") == ["one two three", " four five"]


def test_an_echoed_credential_is_redacted_however_the_snapshots_cut_it():
    token = "hf_userSecretToken1234567890abcdef"
    text = f"you sent &#104;{token[1:]} and {token.upper()} ok"
    for step in (1, 3, 7):
        differ = SnapshotDiffer(secrets=(token, None))
        sent = "".join(differ.feed(text[:end]).content for end in range(step, len(text), step))
        sent += differ.feed(text, final=True).content
        assert sent == "you sent [redacted] and [redacted] ok", sent
