"""Hostile apps (issue 12, findings 4, 12, 13 and 16): what an app sends costs bounded memory and
time, is a 502 when malformed, never a 500; redirects off the app's host are not followed.

Each attack runs through a live gunicorn worker while a probe measures /healthz: it must keep
answering within a second, and the worker's RSS must stay within bounds.
"""
from __future__ import annotations

import functools
import gzip
import itertools
import json
import time
import zlib
from typing import Any, Callable, Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.fixtures_faults import ProbedGunicorn
from tests.health_probe import HealthProbe
from tests.standins.hostile import (CONFIG, INFO, QUEUE_CONFIG, HostileGradio, completed, events, generating,
                                    gzip_bomb, json_answer, queue_events, response)
from tests.standins.hub import Space, StandInHub

MIB = 1024 * 1024
MODELS = 400                        # one per attack: the fuzz test alone makes 40
MAX_UPSTREAM = 4 * MIB              # the fixture's MAX_UPSTREAM_BYTES
TOTAL_TIMEOUT = 20                  # the fixture's UPSTREAM_TOTAL_TIMEOUT, seconds
# What one attack may add to the worker's peak RSS. An answer of MAX_UPSTREAM_BYTES is held as
# bytes, then as Python objects, and JSON's objects are large: a message {"role": …, "content": "a"}
# is 33 bytes of JSON and ~400 in objects (a 3 MB history of them peaked at 64 MiB). 24 times
# MAX_UPSTREAM_BYTES covers that; 16 MiB of slack the interpreter's own growth (pools, the
# request's objects). 112 MiB, where an unbounded read of any of the bombs below takes 1 GiB.
PEAK_BOUND_KIB = (24 * MAX_UPSTREAM + 16 * MIB) // 1024
BOMB = 1024 * MIB                   # what each bomb inflates to


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileGradio]:
    server = HostileGradio()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hub() -> Iterator[StandInHub]:
    server = StandInHub()
    yield server
    server.stop()


SPACES = 4                          # models s0… are Spaces of the stand-in Hub, for waking ones up


@pytest.fixture(scope="module")
def gateway(hostile: HostileGradio, hub: StandInHub,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedGunicorn]:
    tmp = tmp_path_factory.mktemp("hostile")
    models = tmp / "models.yaml"
    # One model per attack: each its own path, so no attack meets another's cached metadata.
    models.write_text("models:\n" + "".join(f"  m{i}:\n    space: {hostile.url}m{i}/\n" for i in range(MODELS))
                      + "".join(f"  s{i}:\n    space: hostile/s{i}\n" for i in range(SPACES)))
    server = ProbedGunicorn(models, tmp, UPSTREAM_IDLE_TIMEOUT="5", UPSTREAM_TOTAL_TIMEOUT=str(TOTAL_TIMEOUT),
                            MAX_UPSTREAM_BYTES=str(MAX_UPSTREAM), HF_ENDPOINT=hub.url)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


_ids = itertools.count()


@pytest.fixture
def model(hostile: HostileGradio) -> str:
    hostile.reset()
    return f"m{next(_ids)}"


@functools.cache
def bomb(layers: int = 2) -> bytes:
    return gzip_bomb(BOMB, layers)


class Attack:
    """What one attack cost: the answer, its time, the worker's peak growth, the probe's verdict."""

    def __init__(self, resp: requests.Response, elapsed: float, peak_kib: int, probe: HealthProbe) -> None:
        self.resp, self.elapsed, self.peak_kib, self.probe = resp, elapsed, peak_kib, probe


def _status(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "VmHWM")}


def attack_measured(gateway: ProbedGunicorn, model: str, stream: bool = False, timeout: float = 60,
                    settle: Callable[[], None] | None = None) -> Attack:
    """One chat request under a /healthz probe, with the worker's peak RSS: its high-water mark
    is reset first (clear_refs 5), so memory allocated and freed during the attack still counts.
    `settle` waits for what the request sets off after its answer (a cancel) to reach the app;
    a round trip through the worker's own probe then waits for the worker to have dealt with it."""
    pid = gateway.probe()["pid"]
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    before = _status(pid)["VmRSS"]
    with HealthProbe(gateway.url) as probe:
        started = time.monotonic()
        resp = requests.post(gateway.url + "/v1/chat/completions", timeout=timeout,
                             json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        elapsed = time.monotonic() - started
        if settle is not None:
            settle()
        gateway.probe()
    peak = _status(pid)["VmHWM"] - before
    assert probe.healthy, probe.verdict()
    assert peak < PEAK_BOUND_KIB, f"the worker's peak grew by {peak // 1024} MiB (bound {PEAK_BOUND_KIB // 1024})"
    assert resp.status_code != 500, resp.text
    return Attack(resp, elapsed, peak, probe)


def attack(gateway: ProbedGunicorn, model: str, stream: bool = False, timeout: float = 60,
           settle: Callable[[], None] | None = None) -> requests.Response:
    """attack_measured's answer: the worker stayed responsive and its peak memory bounded."""
    return attack_measured(gateway, model, stream, timeout, settle).resp


def assert_502(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 502, resp.text
    body = resp.json()
    assert body["error"]["type"] == "upstream_error"
    return body


# ------------------------------------------------------------ finding 4: bounded reading and inflating

def assert_cut(resp: requests.Response) -> None:
    """A 502 that says why: the answer was over MAX_UPSTREAM_BYTES, or its compression corrupt."""
    message = assert_502(resp)["error"]["message"]
    assert "oversized" in message or "corrupt" in message, message


def test_a_gzip_gzip_bomb_of_an_info_is_a_502_in_bounded_memory(gateway, hostile, model):
    assert len(bomb()) < 64 * 1024                       # a few KiB on the wire for a GiB
    hostile.answers["info"] = response(200, bomb(), {"Content-Type": "application/json",
                                                     "Content-Encoding": "gzip, gzip"})
    assert_cut(attack(gateway, model))


def test_a_gzip_bomb_of_a_config_is_a_502_in_bounded_memory(gateway, hostile, model):
    hostile.answers["config"] = response(200, bomb(1), {"Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert_cut(attack(gateway, model))


def test_a_gzipped_config_within_bounds_is_read(gateway, hostile, model):
    hostile.answers["config"] = response(200, gzip.compress(json.dumps(CONFIG).encode()),
                                         {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    resp = attack(gateway, model)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "an answer"


def test_an_oversized_config_is_not_read_whole(gateway, hostile, model):
    padding = {"padding": "x" * (40 * MIB)}
    hostile.answers["config"] = json_answer({**CONFIG, **padding})
    assert_cut(attack(gateway, model))


def test_a_gzip_bomb_in_an_error_body_is_a_502(gateway, hostile, model):
    hostile.answers["call"] = response(500, bomb(), {"Content-Encoding": "gzip, gzip"})
    assert_502(attack(gateway, model))       # its message is HTTP 500's: the body is cut at 64 KiB


def test_one_oversized_event_is_a_502_in_bounded_memory_and_time(gateway, hostile, model):
    hostile.answers["events"] = events(("complete", ["x" * (40 * MIB)]))
    done = attack_measured(gateway, model)
    assert_cut(done.resp)
    assert done.elapsed < TOTAL_TIMEOUT, f"{done.elapsed:.1f} s, over UPSTREAM_TOTAL_TIMEOUT"


def test_a_gzip_bomb_in_an_event_stream_is_a_502(gateway, hostile, model):
    hostile.answers["events"] = response(200, headers={"Content-Type": "text/event-stream",
                                                        "Content-Encoding": "gzip, gzip"}, chunks=[bomb()])
    assert_cut(attack(gateway, model))


def test_a_gzipped_event_stream_within_bounds_is_read(gateway, hostile, model):
    body = gzip.compress(b'event: complete\ndata: ["zipped"]\n\n')
    hostile.answers["events"] = response(200, headers={"Content-Type": "text/event-stream",
                                                        "Content-Encoding": "gzip"}, chunks=[body])
    assert attack(gateway, model).json()["choices"][0]["message"]["content"] == "zipped"


# ------------------------------------------------------------ what a cancel or a wake-up gets back is not read

def closed(hostile: HostileGradio, *routes: str) -> Callable[[], None]:
    """attack's settle: wait until these requests reached the app and the gateway closed the
    connection that carried their answers (at once, when it drops them unread; a connection
    kept for reuse after reading an answer to its end stays open)."""
    def wait() -> None:
        deadline = time.monotonic() + 10
        while not all(r in hostile.closed_at for r in routes):
            assert time.monotonic() < deadline, f"{routes}: seen {hostile.routes_seen()}, closed {hostile.closed_at}"
            time.sleep(0.02)
    return wait


def bombed(status: int = 200) -> Any:
    return response(status, bomb(), {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"})


def off_host(other: HostileGradio) -> Any:
    return response(307, headers={"Location": other.url + "elsewhere/cancel"})


APP_ERROR = {"error": "the app failed", "title": None}


@pytest.mark.parametrize("answer", ["bomb", "redirect"])
def test_the_cancel_of_a_call_reads_no_answer_and_follows_no_redirect_off_the_host(gateway, hostile, model,
                                                                                   answer):
    other = HostileGradio()
    try:
        # The app errs mid-answer: the gateway closes the job, which sends /cancel (6.18+).
        hostile.answers["events"] = events(("generating", ["partial"]), ("error", APP_ERROR))
        hostile.answers["cancel"] = bombed() if answer == "bomb" else off_host(other)
        assert_502(attack(gateway, model, settle=closed(hostile, "cancel")))
        assert not other.seen, "the cancel followed a redirect to another host"
    finally:
        other.close()


@pytest.mark.parametrize("answer", ["bomb", "redirect"])
def test_the_reset_and_cancel_of_a_queue_job_read_no_answer_and_follow_no_redirect_off_the_host(
        gateway, hostile, model, answer):
    other = HostileGradio()
    try:
        hostile.answers["config"] = json_answer(QUEUE_CONFIG)
        hostile.answers["data"] = queue_events(generating(["partial"]), {
            "msg": "process_completed", "event_id": "e1", "success": False, "output": APP_ERROR})
        for route in ("reset", "cancel"):
            hostile.answers[route] = bombed(500) if answer == "bomb" else off_host(other)
        assert_502(attack(gateway, model, settle=closed(hostile, "reset", "cancel")))
        assert not other.seen, "the reset or the cancel followed a redirect to another host"
    finally:
        other.close()


_spaces = itertools.count()


def test_waking_a_sleeping_space_does_not_read_its_page(gateway, hostile, hub):
    hostile.reset()
    name = f"s{next(_spaces)}"
    hub.spaces[f"hostile/{name}"] = Space(host=f"{hostile.url}{name}/", stages=["SLEEPING", "RUNNING"])
    hostile.answers["other"] = bombed()                  # the Space's page, which the wake-up GETs
    resp = attack(gateway, name, settle=closed(hostile, "other"))
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "an answer"


# ------------------------------------------------------------ linear CPU in what an app sends

def test_a_long_run_of_assistant_messages_costs_linear_time(gateway, hostile, model):
    """A 3 MB snapshot of 90k assistant messages after one user message: its answer was built by
    insertion at the front, quadratic (2.5 s of a blocked worker per snapshot at 100k)."""
    history = [{"role": "user", "content": "q"}] + [{"role": "assistant", "content": "a"}] * 90_000
    assert 2.5 * MIB < len(json.dumps(history)) < MAX_UPSTREAM
    hostile.answers["events"] = events(("generating", [history]), ("complete", [history]))
    resp = attack(gateway, model)
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "\n".join(["a"] * 90_000)


def test_output_diffs_that_move_a_list_each_time_are_a_502_in_linear_time(gateway, hostile, model):
    """Gradio 5's queue: 200,000 inserts at the front of a list in one 3 MB message (quadratic:
    9.8 s of a blocked worker before), charged what they move."""
    hostile.answers["config"] = json_answer(QUEUE_CONFIG)
    hostile.answers["data"] = queue_events(generating([[]]), generating([[["add", [0], 0]] * 200_000]),
                                           completed(["unreached"]))
    assert "too costly" in assert_502(attack(gateway, model))["error"]["message"]


def test_many_small_appends_over_the_queue_are_an_answer(gateway, hostile, model):
    """An honest generator's stream of diffs: 5,000 appends, applied in place."""
    hostile.answers["config"] = json_answer(QUEUE_CONFIG)
    appends = [generating([[["append", [], "tok "]]]) for _ in range(5_000)]
    hostile.answers["data"] = queue_events(generating([""]), *appends, completed(["tok " * 5_000]))
    resp = attack(gateway, model, stream=True)
    assert resp.status_code == 200
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in resp.text.splitlines() if line.startswith("data: {"))
    assert text == ("tok " * 5_000).strip() or text == "tok " * 5_000


# ------------------------------------------------------------ finding 13: malformed answers are 502s

MALFORMED_CONFIGS = {
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "dependencies a number": json.dumps({**CONFIG, "dependencies": 5}).encode(),
    "components a string": json.dumps({**CONFIG, "components": "x"}).encode(),
    "not an object": b"[1, 2]",
    "not json": b"<html>hello</html>",
}


@pytest.mark.parametrize("body", list(MALFORMED_CONFIGS.values()), ids=list(MALFORMED_CONFIGS))
def test_malformed_configs_are_502s(gateway, hostile, model, body):
    hostile.answers["config"] = response(200, body, {"Content-Type": "application/json"})
    resp = attack(gateway, model)
    assert resp.status_code in (200, 502), resp.text


def _info_with(**param: Any) -> dict[str, Any]:
    base = INFO["named_endpoints"]["/chat"]["parameters"][0]
    slider = {"parameter_name": "max_new_tokens", "label": "Max", "component": "Slider",
              "parameter_has_default": True, "parameter_default": 5, **param}
    return {"named_endpoints": {"/chat": {"parameters": [base, slider], "returns": []}}}


@pytest.mark.parametrize("param", [
    {"type": {"type": "number", "description": "numeric value between . and 2"}},
    {"type": {"type": "number"}, "python_type": "int"},
    {"type": "number"},
    {"type": {"type": "number", "minimum": "a", "maximum": []}},
], ids=["range of dots", "python_type a string", "type a string", "bounds not numbers"])
def test_odd_parameter_descriptions_never_500(gateway, hostile, model, param):
    config = {**CONFIG, "components": CONFIG["components"] + [{"id": 3, "type": "slider", "props": {}}],
              "dependencies": [{**CONFIG["dependencies"][0], "inputs": [1, 3]}]}
    hostile.answers["config"] = json_answer(config)
    hostile.answers["info"] = json_answer(_info_with(**param))
    for _ in range(2):                                   # and not a cached failure either
        resp = attack(gateway, model)
        assert resp.status_code in (200, 502), resp.text


@pytest.mark.parametrize("outputs", [
    [{"text": "a", "files": 5}], [{"role": "assistant", "content": {"x": 1}}], [[[1, 2, 3]]], 7, "[",
])
def test_odd_outputs_never_500(gateway, hostile, model, outputs):
    hostile.answers["events"] = events(("complete", outputs))
    assert attack(gateway, model).status_code in (200, 502)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)

# The fuzzed app's answers. Statuses are those the contract answers with a 502 when they come
# from an app (401/403 -> 401, 429 -> 429, 502/503/504 -> 503 are the contract's own rows, tested
# in test_faults.py). Sizes reach twice the fixture's MAX_UPSTREAM_BYTES. The stand-in never
# hangs and never sends less than its Content-Length, so no 504 is legitimate here: every
# answer is a success or a 502.
STATUSES = st.sampled_from([200, 200, 200, 200, 400, 404, 410, 422, 500])
ENCODINGS = st.sampled_from(["", "gzip", "gzip, gzip", "deflate", "corrupt gzip", "br", "bomb"])
SIZES = st.sampled_from([0, 1, 1000, MAX_UPSTREAM - 4096, MAX_UPSTREAM + 1, 2 * MAX_UPSTREAM])


def _padded(value: Any, size: int) -> bytes:
    """`value` as JSON, grown to about `size` bytes with a padding string where it has room."""
    raw = json.dumps(value).encode()
    if size <= len(raw):
        return raw
    if isinstance(value, dict):
        return json.dumps({**value, "padding": "x" * (size - len(raw))}).encode()
    return json.dumps([value, "x" * (size - len(raw))]).encode()


def _grown(valid: bytes, size: int) -> bytes:
    """A JSON body padded to `size`; an event stream given one more event of `size`."""
    try:
        return _padded(json.loads(valid), size)
    except ValueError:
        return valid + b'data: "' + b"x" * size + b'"\n\n'


def _sse(frames: list[tuple[str | None, Any]]) -> bytes:
    return b"".join((f"event: {kind}\n" if kind else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"
                    for kind, data in frames)


@st.composite
def bodies(draw: st.DrawFn, valid: bytes, values: st.SearchStrategy[Any]) -> bytes:
    """A body: the valid one, grown, a drawn JSON value, nested deep, or not JSON at all."""
    kind = draw(st.sampled_from(["valid", "padded", "value", "nested", "garbage", "truncated"]))
    if kind == "valid":
        return valid
    if kind == "padded":
        return _grown(valid, draw(SIZES))
    if kind == "value":
        return json.dumps(draw(values)).encode()
    if kind == "nested":
        depth = draw(st.sampled_from([1000, 100_000]))
        return b"[" * depth + b"]" * depth
    if kind == "garbage":
        return draw(st.binary(max_size=64)) + b"\n\n" + b"x" * draw(SIZES)
    return valid[: len(valid) // 2]


def _event_bodies(protocol: str) -> st.SearchStrategy[bytes]:
    """An event stream: valid, with drawn outputs (snapshots, or diffs on the queue), one
    oversized event, malformed lines, or the ones `bodies` draws."""
    outputs = json_values | st.builds(lambda n: "x" * n, SIZES)
    if protocol == "call":
        valid = _sse([("generating", ["an"]), ("complete", ["an answer"])])
        drawn = st.builds(lambda o: _sse([("generating", o), ("complete", o)]), outputs)
    else:
        valid = _sse([(None, generating([""])), (None, generating([[["append", [], "an answer"]]])),
                      (None, completed(["an answer"]))])
        diffs = st.lists(st.tuples(st.sampled_from(["append", "add", "replace", "delete", "other"]),
                                   st.lists(st.integers(-2, 3) | st.text(max_size=3), max_size=3), json_values),
                         max_size=5).map(lambda edits: [list(e) for e in edits])
        drawn = st.builds(lambda first, diff, last: _sse([(None, generating(first)), (None, generating(diff)),
                                                          (None, completed(last))]),
                          outputs, st.lists(diffs, min_size=1, max_size=2), outputs)
    malformed = st.sampled_from([b"data: {\n\n", b"event: complete\ndata: [1, \n\n", b"data: \xff\xfe\n\n",
                                 b":" * 1000 + b"\n", b"data: " + b"[" * 100_000 + b"\n\n"])
    return st.one_of(st.just(valid), drawn, malformed, bodies(valid, json_values))


@st.composite
def answers(draw: st.DrawFn, body: st.SearchStrategy[bytes], kind: str = "application/json") -> Any:
    status, encoding, raw = draw(STATUSES), draw(ENCODINGS), draw(body)
    headers = {"Content-Type": kind}
    if encoding == "gzip":
        raw = gzip.compress(raw, 1)
    elif encoding == "gzip, gzip":
        raw = gzip.compress(gzip.compress(raw, 1), 1)
    elif encoding == "deflate":
        raw = zlib.compress(raw, 1)
    elif encoding == "corrupt gzip":
        raw, encoding = b"\x1f\x8b\x08\x00" + raw[:64], "gzip"
    elif encoding == "br":
        raw = b"\x0b\x02\x80" + raw[:64]
    elif encoding == "bomb":                             # the body replaced by a GiB of zeros
        raw, encoding = bomb(), "gzip, gzip"
    if encoding:
        headers["Content-Encoding"] = encoding
    if kind == "text/event-stream":
        return response(status, headers=headers, chunks=[raw[i:i + 65536] for i in range(0, len(raw), 65536)])
    return response(status, raw, headers)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def hostile_apps(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A protocol, and for each of its requests either the honest answer (None) or a drawn one."""
    protocol = draw(st.sampled_from(["call", "queue"]))
    config = CONFIG if protocol == "call" else QUEUE_CONFIG
    config_values = st.dictionaries(st.sampled_from(["version", "protocol", "api_prefix", "components",
                                                     "dependencies", "enable_queue"]), json_values,
                                    max_size=3).map(lambda patch: {**config, **patch})
    routes = {
        "config": answers(bodies(_json(config), config_values)),
        "info": answers(bodies(_json(INFO), json_values | st.fixed_dictionaries(
            {"named_endpoints": st.dictionaries(st.just("/chat"), json_values)}))),
        "events" if protocol == "call" else "data": answers(_event_bodies(protocol), "text/event-stream"),
        "call" if protocol == "call" else "join": answers(bodies(_json({"event_id": "e1"}), json_values)),
        "cancel": answers(bodies(_json({"success": True}), json_values)),
    }
    if protocol == "queue":
        routes["reset"] = answers(bodies(_json(True), json_values))
    # One or two routes hostile, the others honest: most examples get as far as the hostile one.
    hostile = draw(st.lists(st.sampled_from(sorted(routes)), min_size=1, max_size=2, unique=True))
    return protocol, {route: draw(routes[route]) for route in hostile}


@settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(app=hostile_apps(), stream=st.booleans())
def test_fuzzed_hostile_apps_are_a_success_or_a_502(gateway, hostile, app, stream):
    """Hypothesis draws a whole hostile app, /call or queue: status, encoding (gzip, gzip twice,
    deflate, corrupt, unsupported, a 1 GiB bomb), body (honest, grown to twice MAX_UPSTREAM_BYTES, drawn JSON,
    100,000 deep, garbage, truncated) of its config, info, submit, events and cancel. Each goes
    through a live worker under the /healthz probe with its peak RSS bounded (attack)."""
    protocol, routes = app
    hostile.reset()
    if protocol == "queue":
        hostile.answers["config"] = json_answer(QUEUE_CONFIG)
    hostile.answers.update(routes)
    resp = attack(gateway, f"m{next(_ids) % MODELS}", stream=stream)   # shrinking may make many
    assert resp.status_code in (200, 502), resp.text[:2000]
    if stream and resp.status_code == 200:
        # An error after the first byte is the stream's error event (sse.py): a 502's, no other.
        for line in resp.text.splitlines():
            if line.startswith("data: {") and '"error"' in line:
                error = json.loads(line[6:]).get("error")
                assert error is None or error["type"] == "upstream_error", line[:2000]


# ------------------------------------------------------------ finding 12: no redirects off the app's host

def test_a_307_on_the_call_is_not_followed_to_another_host(gateway, hostile, model):
    other = HostileGradio()
    try:
        hostile.answers["call"] = response(307, headers={"Location": other.url + "steal/call/chat"})
        resp = attack(gateway, model)
        assert_502(resp)
        assert not other.seen, "the prompt was re-posted to another host"
    finally:
        other.close()


def test_a_config_redirect_to_another_host_does_not_reflect_its_text(gateway, hostile, model):
    other = HostileGradio()
    try:
        other.answers["config"] = json_answer({"error": "SECRET-OF-THE-OTHER-HOST"}, status=500)
        hostile.answers["config"] = response(302, headers={"Location": other.url + "x/config"})
        resp = attack(gateway, model)
        assert resp.status_code == 502 and "SECRET-OF-THE-OTHER-HOST" not in resp.text
        assert not other.seen
    finally:
        other.close()


def test_a_redirect_on_the_same_host_is_followed(gateway, hostile, model):
    moved = {"n": 0}

    def config(req):
        if "moved" in req.path:
            return json_answer(CONFIG)(req)
        moved["n"] += 1
        return response(301, headers={"Location": req.path.replace("/config", "/moved/config")})(req)
    hostile.answers["config"] = config
    # /info then lives under the new base too.
    resp = attack(gateway, model)
    assert resp.status_code in (200, 502) and moved["n"] == 1


# ------------------------------------------------------------ finding 16: Connection: close streams are cut

def test_a_connection_close_event_stream_is_closed_when_the_client_leaves(gateway, hostile, model):
    body = b'event: generating\ndata: ["still going"]\n\n'
    hostile.answers["events"] = response(200, headers={"Content-Type": "text/event-stream",
                                                        "Connection": "close"}, chunks=None, body=b"")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    hostile.answers["events"] = lambda req: iter([head + body])
    resp = requests.post(gateway.url + "/v1/chat/completions", stream=True, timeout=30,
                         json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    lines = resp.iter_lines()
    for line in lines:
        if b"still going" in line:
            break
    left = time.monotonic()
    resp.close()
    deadline = left + 5
    while hostile.stream_closed_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.stream_closed_at is not None and hostile.stream_closed_at - left < 2.0
