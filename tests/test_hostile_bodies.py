"""Hand-written hostile bodies: each ends in a 4xx in OpenAI's error shape (or a normal answer), never a 5xx.

Sizes and the 413 are also checked through a live gunicorn over a raw socket:
the 413 for a 20 MB body is decided from Content-Length alone, before a byte of
the body is sent.
"""
from __future__ import annotations

import json
import socket
import time

import pytest

MIB = 1024 * 1024
LIMIT = 10 * MIB


def chat_body(**extra) -> dict:
    return {"model": "steady", "messages": [{"role": "user", "content": "hi"}], **extra}


def assert_error(resp, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data()[:300]
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    if code:
        assert body["error"]["code"] == code
    if param:
        assert body["error"]["param"] == param
    # A hostile value is never echoed back whole: error bodies stay small.
    assert len(resp.get_data()) < 4096, f"error body of {len(resp.get_data())} bytes"
    return body["error"]


@pytest.fixture
def client(faulty_client):
    return faulty_client


# ---------------------------------------------------------------- nesting

@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_400(client, depth):
    raw = "[" * depth + "]" * depth
    assert_error(client.post("/v1/chat/completions", data=raw, content_type="application/json"), 400)


@pytest.mark.parametrize("where", ["content", "unknown_field", "stop", "stream_options"])
def test_deep_nesting_inside_a_valid_request_is_a_400_not_a_crash(client, where):
    deep = "[" * 50_000 + "]" * 50_000
    if where == "content":
        raw = '{"model":"steady","messages":[{"role":"user","content":%s}]}' % deep
    else:
        raw = '{"model":"steady","messages":[{"role":"user","content":"hi"}],"%s":%s}' % (where, deep)
    assert_error(client.post("/v1/chat/completions", data=raw, content_type="application/json"), 400)


def test_moderately_nested_unknown_fields_are_ignored(client):
    nested: object = "leaf"
    for _ in range(200):
        nested = {"a": [nested]}
    resp = client.post("/v1/chat/completions", json=chat_body(metadata=nested))
    assert resp.status_code == 200, resp.get_json()


# ---------------------------------------------------------------- sizes

def test_a_huge_string_within_the_limit_is_carried_to_the_app(client, fresh_faulty):
    text = "y" * (9 * MIB)
    resp = client.post("/v1/chat/completions", json=chat_body(messages=[{"role": "user", "content": text}]))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["usage"]["prompt_tokens"] > 2 * MIB


@pytest.mark.parametrize("field", ["model", "role", "type", "reasoning_effort", "stop_item"])
def test_huge_strings_in_checked_fields_give_small_errors(client, field):
    huge = "z" * (8 * MIB)
    body = chat_body()
    if field == "model":
        body["model"] = huge
    elif field == "role":
        body["messages"] = [{"role": huge, "content": "hi"}]
    elif field == "type":
        body["messages"] = [{"role": "user", "content": [{"type": huge}]}]
    elif field == "reasoning_effort":
        body["reasoning_effort"] = huge
    else:
        body["stop"] = [huge, 5]
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code in (400, 404)
    assert_error(resp, resp.status_code)


def test_ten_thousand_messages_are_handled(client, fresh_faulty):
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(10_000)]
    started = time.monotonic()
    resp = client.post("/v1/chat/completions", json=chat_body(messages=messages))
    assert resp.status_code == 200, resp.get_json()
    assert time.monotonic() - started < 20
    # The whole conversation reached the app (as a transcript in the message).
    call = [s for s in fresh_faulty.requests_to("steady") if s.path == "/gradio_api/call/chat"][-1]
    assert call.headers["content-length"] and int(call.headers["content-length"]) > 100_000


def test_a_20_mb_body_is_a_413(client):
    raw = json.dumps(chat_body(messages=[{"role": "user", "content": "x" * (20 * MIB)}]))
    assert_error(client.post("/v1/chat/completions", data=raw, content_type="application/json"), 413,
                 "request_too_large")


def test_the_limit_is_exact(client):
    filler = " " * (LIMIT - len(json.dumps(chat_body())))
    at_limit = json.dumps(chat_body()) + filler
    assert len(at_limit.encode()) == LIMIT
    assert client.post("/v1/chat/completions", data=at_limit, content_type="application/json").status_code == 200
    assert_error(client.post("/v1/chat/completions", data=at_limit + " ", content_type="application/json"),
                 413, "request_too_large")


# ---------------------------------------------------------------- content types and encodings

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml",
                                          "application/jsonx", "json"])
def test_bodies_not_sent_as_json_are_a_400(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post("/v1/chat/completions", data=json.dumps(chat_body()), headers=headers)
    assert_error(resp, 400, "invalid_content_type")


def test_json_with_a_charset_parameter_is_accepted(client):
    resp = client.post("/v1/chat/completions", data=json.dumps(chat_body()),
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200


@pytest.mark.parametrize("raw", [
    b'{"model": "\xff\xfe", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "steady", "messages": [{"role": "user", "content": "\xc0\xaf"}]}',   # overlong
    b'{"model": "steady", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',   # a surrogate
    '{"model": "steady"}'.encode("utf-16"),
    b"\x00\x01\x02", b"", b"null", b"[]", b'"a string"', b"12", b"{", b'{"model": "steady",}',
    b'{"model": NaN, "messages": []}',
])
def test_invalid_utf8_and_non_objects_are_a_400(client, raw):
    assert_error(client.post("/v1/chat/completions", data=raw, content_type="application/json"), 400)


def test_escaped_lone_surrogates_do_not_crash_the_gateway(client):
    resp = client.post("/v1/chat/completions", data='{"model": "\\ud800", "messages": [{"role": "user", '
                                                     '"content": "hi"}]}', content_type="application/json")
    assert_error(resp, 404, "model_not_found")
    for stream in (False, True):
        resp = client.post("/v1/chat/completions", content_type="application/json", data=json.dumps(
            chat_body(stream=stream)).replace('"hi"', '"\\udfff lone"'))
        assert resp.status_code == 200


# ---------------------------------------------------------------- content parts

@pytest.mark.parametrize("part", [
    {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, {"type": "file", "file": {}},
    {"type": "image", "image": "x"}, {"type": "refusal", "refusal": "no"}, {"type": ""}, {"type": None},
    {"type": 5}, {"type": ["text"]}, {}, {"text": "no type"}, "just a string", 7, None, [],
])
def test_unknown_or_malformed_content_parts_are_a_400_naming_the_part(client, part):
    body = chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "ok"}, part]}])
    error = assert_error(client.post("/v1/chat/completions", json=body), 400)
    assert error["param"].startswith("messages[0].content[1]"), error


# ---------------------------------------------------------------- through a live gunicorn, over a raw socket

def raw_exchange(port: int, head: bytes, body_chunks: list[bytes] = (), deadline: float = 10.0) -> bytes:
    """Send head (and chunks), then read the answer until the server closes or the deadline passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break   # the server answered and closed: it did not want the rest
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_a_20_mb_content_length_is_refused_before_the_body_is_sent(probed_gunicorn):
    """Only the headers go out; the 413 comes back anyway: the size was judged from Content-Length."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (20 * MIB))
    started = time.monotonic()
    answer = raw_exchange(probed_gunicorn.port, head)
    assert time.monotonic() - started < 5
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:300]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "request_too_large"


def chunked(body: bytes, piece: int = MIB) -> list[bytes]:
    parts = [body[i:i + piece] for i in range(0, len(body), piece)]
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


CHUNKED_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


def padded_to(size: int) -> bytes:
    """A valid chat request padded with trailing spaces to exactly size bytes."""
    body = json.dumps(chat_body()).encode()
    return body + b" " * (size - len(body))


def test_a_chunked_body_over_the_limit_is_a_413_not_silently_truncated(probed_gunicorn):
    """Without Content-Length the size is only known while reading: one byte past the limit is a 413.
    (Cut at the limit, this body would parse as a valid request.)"""
    answer = raw_exchange(probed_gunicorn.port, CHUNKED_HEAD, chunked(padded_to(LIMIT + 1)), deadline=30)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"413", answer[:300]


def test_a_chunked_body_at_the_limit_is_accepted(probed_gunicorn):
    answer = raw_exchange(probed_gunicorn.port, CHUNKED_HEAD, chunked(padded_to(LIMIT)), deadline=30)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", answer[:300]


def test_the_worker_survives_deep_nesting_and_answers_the_next_request(probed_gunicorn):
    deep = b"[" * 200_000 + b"]" * 200_000
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(deep))
    answer = raw_exchange(probed_gunicorn.port, head, [deep])
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", answer[:300]
    pid = probed_gunicorn.probe()["pid"]
    ok = raw_exchange(probed_gunicorn.port, b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
    assert b" 200 " in ok.split(b"\r\n", 1)[0]
    assert probed_gunicorn.probe()["pid"] == pid, "the worker was not restarted"
