"""CONTRACT §11 against hostile callers and hostile apps (issue 12): no request or app answer
costs more than linear CPU, bounded memory and bounded time, and the worker keeps answering
`/healthz` within a second while it is under attack.

Each attack goes through a live gunicorn (one gevent worker) in front of the misbehaving
stand-in (tests/standins/faulty.py), while a probe in a process of its own
(tests/health_probe.py) measures `/healthz` latency throughout. Finding 8 (made-up tokens and
the metadata cache) is in tests/test_cache.py, the hostile apps in tests/test_hostile_apps.py.
The figures in the README's "Guarantees" section are what these tests print (`-s`).
"""
from __future__ import annotations

import base64
import html
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from gateway.upstream.image_store import IMAGE_BYTES_IN_FLIGHT
from tests.fixtures_faults import ProbedGunicorn
from tests.health_probe import HEALTHY, HealthProbe
from tests.standins.faulty import Fault, FaultyGradio

OPERATOR_TOKEN = "hf_operatorSecretToken0987654321fedcba"
GATEWAY_KEY = "sk-gateway-key-for-tests-0123456789"
MIB = 1024 * 1024
SLACK = 128 * MIB           # one request's parse (its body three times over) and the allocator's slack


@pytest.fixture(scope="module")
def patient(faulty: FaultyGradio, faulty_models_file: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedGunicorn]:
    """A live gateway whose timeouts do not end the attacks before the code under test is reached."""
    server = ProbedGunicorn(faulty_models_file, tmp_path_factory.mktemp("patient"),
                            UPSTREAM_IDLE_TIMEOUT="20", UPSTREAM_TOTAL_TIMEOUT="60", SSE_KEEPALIVE="5")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def gateway(patient: ProbedGunicorn, fresh_faulty: FaultyGradio) -> str:
    return patient.url


def chat(url: str, model: str, text: str = "hi", timeout: float = 60, **extra: Any) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return requests.post(url + "/v1/chat/completions", json=body, timeout=timeout)


def stream_items(resp: requests.Response) -> list[Any]:
    lines = [line[6:] for line in resp.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", resp.text[-300:]
    return [json.loads(line) for line in lines[:-1]]


def streamed_content(resp: requests.Response) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in stream_items(resp) if c["choices"])


def report(finding: int, what: str, elapsed: float, probe: HealthProbe) -> None:
    print(f"\nfinding {finding}: {what}: {elapsed:.2f}s, /healthz worst {probe.worst * 1000:.0f} ms "
          f"(bound {HEALTHY * probe.stretch:.1f} s)")


# ---------------------------------------------------------------- 1: reasoning tags

def test_an_answer_of_unclosed_details_tags_costs_linear_time(gateway, fresh_faulty):
    """`<details<details…` (no `>`): the tag regex was quadratic; an app quoting a 96 KB message
    froze the worker for two minutes."""
    fresh_faulty.apps["faulty"].inject(Fault("stream", message="<details" * 12_000, size=12_000))
    with HealthProbe(gateway) as probe:
        started = time.monotonic()
        resp = chat(gateway, "faulty")
        elapsed = time.monotonic() - started
    report(1, "96 KB of <details in 8 snapshots", elapsed, probe)
    assert resp.status_code == 200, resp.text[:300]
    assert len(resp.json()["choices"][0]["message"]["content"]) == 96_000
    assert elapsed < 5 and probe.healthy


# ---------------------------------------------------------------- 2: pseudo-streaming

@pytest.mark.parametrize("stream", [False, True])
def test_a_huge_answer_of_an_app_that_does_not_stream_is_a_bounded_number_of_chunks(gateway, fresh_faulty,
                                                                                    stream):
    """A 2 MB non-streaming answer was 700,000 queue items popped with list.pop(0): 57 s stalled."""
    text = "ab " * 700_000
    fresh_faulty.apps["plain"].inject(Fault("output", message=text))
    with HealthProbe(gateway) as probe:
        started = time.monotonic()
        resp = chat(gateway, "plain", stream=stream)
        elapsed = time.monotonic() - started
    report(2, f"2.1 MB pseudo-streamed answer (stream={stream})", elapsed, probe)
    assert resp.status_code == 200
    if stream:
        chunks = [c for c in stream_items(resp) if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == text
        assert len(chunks) <= 300
    else:
        assert resp.json()["choices"][0]["message"]["content"] == text
    assert elapsed < 10 and probe.healthy


# ---------------------------------------------------------------- 3: stop sequences

def test_long_stop_sequences_cost_time_linear_in_the_stream(gateway, fresh_faulty):
    """Four long `stop` strings over a 16k-character stream cost 33 s of CPU (a slice per length
    per snapshot)."""
    text = "ab " * 5_400
    stops = ["ab " * 2_000 + "X", "ba " * 2_000, "ab " * 1_999 + "aY", "b" * 6_000]
    fresh_faulty.apps["faulty"].inject(Fault("stream", message=text, size=32))
    with HealthProbe(gateway) as probe:
        started = time.monotonic()
        resp = chat(gateway, "faulty", stream=True, stop=stops)
        elapsed = time.monotonic() - started
    report(3, "16k-character stream in 507 snapshots, four 6,000-character stops", elapsed, probe)
    assert streamed_content(resp) == text
    assert elapsed < 10 and probe.healthy


def test_a_long_stop_sequence_is_still_found_across_snapshots(gateway, fresh_faulty):
    text = "ab " * 3_000 + "THE END" + " more"
    fresh_faulty.apps["faulty"].inject(Fault("stream", message=text, size=7))
    resp = chat(gateway, "faulty", stream=True, stop=["ab " * 500 + "THE END"])
    assert streamed_content(resp) == "ab " * 2_500


# ---------------------------------------------------------------- 5: a client that never reads

@pytest.fixture
def brisk(faulty: FaultyGradio, faulty_models_file: Path, tmp_path: Path) -> Iterator[ProbedGunicorn]:
    """UPSTREAM_TOTAL_TIMEOUT=6, UPSTREAM_IDLE_TIMEOUT=2: time for the answer to be produced, even
    on a busy machine, well before the cut-off at 8 s."""
    server = ProbedGunicorn(faulty_models_file, tmp_path, UPSTREAM_TOTAL_TIMEOUT="6", UPSTREAM_IDLE_TIMEOUT="2")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_a_client_that_never_reads_is_cut_off_by_the_timeouts(brisk, fresh_faulty):
    """gunicorn wrote with no timeout: a client that never read kept the answer, its memory and
    the connection for as long as it stayed connected. Here the socket is shut down at
    UPSTREAM_TOTAL_TIMEOUT + UPSTREAM_IDLE_TIMEOUT = 8 s after the request."""
    fresh_faulty.apps["faulty"].inject(Fault("enormous", size=12 * 1024 * 1024))
    body = json.dumps({"model": "faulty", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    with HealthProbe(brisk.url) as probe:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", brisk.port))
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode()))
        time.sleep(10)                      # the client reads nothing meanwhile: that is the attack
        sock.settimeout(20)
        received, ended = bytearray(), None
        try:
            while chunk := sock.recv(1 << 20):
                received += chunk
        except (ConnectionResetError, socket.timeout) as exc:
            ended = type(exc).__name__
        elapsed = time.monotonic() - started
        sock.close()
    report(5, f"client never reading a 12 MB stream (cut after {len(received)} bytes, {ended or 'EOF'})",
           elapsed, probe)
    assert b"data: [DONE]" not in received, "the whole answer was kept for the client"
    assert ended != "timeout"
    assert probe.healthy


# ---------------------------------------------------------------- 6: a body that never arrives

def test_a_body_that_never_arrives_gets_408_within_the_idle_timeout(probed_gunicorn, fresh_faulty):
    with HealthProbe(probed_gunicorn.url) as probe, socket.create_connection(
            ("127.0.0.1", probed_gunicorn.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            pass
        elapsed = time.monotonic() - started
    report(6, "headers, then no body", elapsed, probe)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"408"], answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert elapsed < 1 + 3 and probe.healthy


# ---------------------------------------------------------------- 7: hang-ups after extra bytes

def test_clients_that_send_extra_bytes_and_hang_up_get_their_jobs_cancelled(gateway, fresh_faulty):
    """One byte after the request turned hang-up detection off: the jobs ran on with nobody there."""
    body = json.dumps({"model": "crawl", "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    clients = 20
    with HealthProbe(gateway) as probe:
        socks = [socket.create_connection(("127.0.0.1", int(gateway.rsplit(":", 1)[1])), timeout=10)
                 for _ in range(clients)]
        for sock in socks:
            sock.sendall(head + body)
        assert fresh_faulty.wait_for(lambda: len(fresh_faulty.jobs_of("crawl")) == clients, timeout=10)
        for sock in socks:              # the request is being served: this byte stays in the kernel
            sock.sendall(b"x")
        time.sleep(0.5)
        left_at = time.monotonic()
        for sock in socks:
            sock.close()
        ended = fresh_faulty.wait_for(
            lambda: all(j.ended != "pending" for j in fresh_faulty.jobs_of("crawl")), timeout=2.5)
        elapsed = time.monotonic() - left_at
    report(7, f"{clients} clients hung up after an extra byte, jobs ended", elapsed, probe)
    assert ended, [j.ended for j in fresh_faulty.jobs_of("crawl")]
    assert probe.healthy


# ---------------------------------------------------------------- 10: malformed chunked framing

@pytest.mark.parametrize("size_line", [b'5;x="', b"zz", b"0x5", b"-5"])
def test_malformed_chunked_framing_is_a_400(probed_gunicorn, size_line):
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    with HealthProbe(probed_gunicorn.url) as probe, socket.create_connection(
            ("127.0.0.1", probed_gunicorn.port), timeout=10) as sock:
        sock.sendall(head + size_line + b"\r\n{\"a\":\r\n0\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    status = answer.split(b"\r\n", 1)[0].split(b" ")[1:2]
    assert status == [b"400"], answer[:300]
    assert "Traceback" not in probed_gunicorn.output()
    assert probe.healthy


# ---------------------------------------------------------------- 15: many empty messages

def test_550_000_empty_messages_do_not_block_the_worker(probed_gunicorn, fresh_faulty):
    body = ('{"model":"steady","messages":[' + ",".join(['{"role":"user"}'] * 550_000) + "]}").encode()
    assert len(body) < 10 * 1024 * 1024
    with HealthProbe(probed_gunicorn.url) as probe:
        started = time.monotonic()
        resp = requests.post(probed_gunicorn.url + "/v1/chat/completions", data=body, timeout=60,
                             headers={"Content-Type": "application/json"})
        elapsed = time.monotonic() - started
    report(15, "550,000 empty messages (9.4 MB)", elapsed, probe)
    assert resp.status_code < 500
    assert elapsed < 5 * probe.stretch and probe.healthy


# ---------------------------------------------------------------- 9, 10: images

def image_parts(urls: list[str]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "look"}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]


def test_one_url_named_by_200_parts_is_fetched_and_uploaded_once(chatty, fresh_faulty):
    """200 parts naming one URL were 200 fetches and uploads; with n: 3, every run fetched again."""
    url = f"http://127.0.0.1:{fresh_faulty.port}/steady/image.png"
    uploads = fresh_faulty.counts["uploads"]
    with HealthProbe(chatty.url) as probe:
        started = time.monotonic()
        resp = requests.post(chatty.url + "/v1/chat/completions", timeout=60, json={
            "model": "vision", "n": 3, "messages": [{"role": "user", "content": image_parts([url] * 200)}]})
        elapsed = time.monotonic() - started
    report(9, "200 parts naming one URL, n: 3", elapsed, probe)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["choices"]) == 3
    assert len([s for s in fresh_faulty.seen if s.path == "/image.png"]) == 1
    assert fresh_faulty.counts["uploads"] - uploads == 1
    assert probe.healthy


@pytest.mark.parametrize("count", [201, 1_000])
def test_more_image_parts_than_the_limit_are_a_400_naming_the_part(chatty, fresh_faulty, count):
    """MAX_IMAGES_PER_REQUEST (200 on this gateway, 16 by default); 1,000 parts were a 500 (the
    upload counter ran out)."""
    data_url = "data:image/png;base64,iVBORw0KGgo="
    uploads = fresh_faulty.counts["uploads"]
    with HealthProbe(chatty.url) as probe:
        resp = requests.post(chatty.url + "/v1/chat/completions", timeout=60, json={
            "model": "vision", "messages": [{"role": "user", "content": image_parts([data_url] * count)}]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "messages[0].content[201]"
    assert fresh_faulty.counts["uploads"] == uploads
    assert probe.healthy


def worker_kib(pid: int, field: str) -> int:
    """A field of /proc/<pid>/status in KiB: VmRSS now, VmHWM the peak since clear_refs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_40_concurrent_7_mib_inline_images_stay_within_the_workers_budget(faulty, faulty_models_file, tmp_path,
                                                                          fresh_faulty):
    """Each request's body is a 9.3 MB data URL; its decoded bytes and upload were two copies
    more, with nothing bounding them across requests: 40 at once took the worker's peak RSS up
    by 1,030 MiB. Now the peak is the bodies plus IMAGE_BYTES_IN_FLIGHT (and one request's
    parse and the allocator's slack, SLACK): the requests over the budget wait for it."""
    server = ProbedGunicorn(faulty_models_file, tmp_path, UPSTREAM_IDLE_TIMEOUT="30", UPSTREAM_TOTAL_TIMEOUT="120")
    try:
        server.wait_ready()
        assert chat(server.url, "vision").status_code == 200        # the app's metadata read: not the attack
        url = "data:image/png;base64," + base64.b64encode(os.urandom(7 * 1024 * 1024)).decode()
        body = json.dumps({"model": "vision", "messages": [{"role": "user", "content": image_parts([url])}]})
        clients, pid, uploads = 40, server.probe()["pid"], fresh_faulty.counts["uploads"]
        before = worker_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")        # VmHWM starts again from VmRSS
        start, statuses = threading.Barrier(clients), []

        def send() -> None:
            start.wait(30)
            statuses.append(requests.post(server.url + "/v1/chat/completions", data=body, timeout=120,
                                          headers={"Content-Type": "application/json"}).status_code)
        with HealthProbe(server.url) as probe:
            started = time.monotonic()
            threads = [threading.Thread(target=send) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(150)
            elapsed = time.monotonic() - started
        grown = (worker_kib(pid, "VmHWM") - before) * 1024
    finally:
        server.stop()
    bound = clients * len(body) + IMAGE_BYTES_IN_FLIGHT + SLACK
    report(9, f"{clients} concurrent 7 MiB data URLs: peak RSS +{grown / MIB:.0f} MiB "
              f"(bound {bound / MIB:.0f} MiB)", elapsed, probe)
    assert statuses == [200] * clients
    assert fresh_faulty.counts["uploads"] - uploads == clients
    assert grown < bound and probe.healthy


# ---------------------------------------------------------------- 14: the operator's token

def token_forms(token: str) -> list[str]:
    return [token, token.upper(), base64.b64encode(f"Bearer {token}".encode()).decode(),
            base64.b64encode(token.encode()).decode(), "".join(f"&#{ord(c)};" for c in token),
            "".join(f"&#x{ord(c):X};" for c in token)]


def assert_no_token(text: str, token: str) -> None:
    for form in (text, html.unescape(text), html.unescape(html.unescape(text))):
        assert token.lower() not in form.lower(), text[:500]
    for needle in (base64.b64encode(token[i:].encode()).decode()[4:-4] for i in range(3)):
        assert needle not in text, text[:500]


@pytest.fixture(scope="module")
def keyed(faulty: FaultyGradio, faulty_models_file: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedGunicorn]:
    """A live gateway for key holders, spending the operator's HF_TOKEN (timeouts that a busy
    machine does not reach)."""
    server = ProbedGunicorn(faulty_models_file, tmp_path_factory.mktemp("keyed"), GATEWAY_API_KEYS=GATEWAY_KEY,
                            HF_TOKEN=OPERATOR_TOKEN, UPSTREAM_IDLE_TIMEOUT="10", UPSTREAM_TOTAL_TIMEOUT="30")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def key_holder_chat(keyed: ProbedGunicorn, stream: bool = False) -> requests.Response:
    return requests.post(keyed.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                         timeout=60, json={"model": "faulty", "stream": stream,
                                           "messages": [{"role": "user", "content": "x"}]})


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("piece", [0, 5])
def test_the_operator_token_echoed_by_an_app_never_reaches_a_key_holder(keyed, fresh_faulty, stream, piece):
    """An app that echoes its credential (in any of these forms, streamed in pieces) gives the key
    holder `[redacted]` instead: HF_TOKEN is spent for key holders, never shown to them."""
    echo = " | ".join(token_forms(OPERATOR_TOKEN)) + " | the end"
    fresh_faulty.apps["faulty"].inject(Fault("stream", message=echo, size=piece))
    with HealthProbe(keyed.url) as probe:
        resp = key_holder_chat(keyed, stream)
    assert resp.status_code == 200
    assert_no_token(resp.text, OPERATOR_TOKEN)
    content = streamed_content(resp) if stream else resp.json()["choices"][0]["message"]["content"]
    assert_no_token(content, OPERATOR_TOKEN)
    assert content.count("[redacted]") == 6 and content.endswith(" | the end"), content
    assert probe.healthy


@pytest.mark.parametrize("form", range(6))
def test_the_operator_token_in_an_app_error_is_redacted_in_every_form(keyed, fresh_faulty, form):
    message = f"bad credential {token_forms(OPERATOR_TOKEN)[form]}"
    fresh_faulty.apps["faulty"].inject(Fault("app_error", message=message))
    with HealthProbe(keyed.url) as probe:
        resp = key_holder_chat(keyed)
    assert resp.status_code == 502
    assert_no_token(resp.text, OPERATOR_TOKEN)
    assert probe.healthy


# ---------------------------------------------------------------- 17: file outputs

def test_a_javascript_url_of_a_file_output_is_not_a_link(gateway, fresh_faulty):
    fresh_faulty.apps["faulty"].inject(Fault("file", message="javascript:alert(document.cookie)"))
    with HealthProbe(gateway) as probe:
        resp = chat(gateway, "faulty")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "click.png"
    assert probe.healthy


# ---------------------------------------------------------------- 11, 18, 19: logs and odd paths

@pytest.fixture(scope="module")
def chatty(faulty: FaultyGradio, faulty_models_file: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedGunicorn]:
    """A live gateway that logs everything, as text, and fetches images from 127.0.0.1, up to 200
    a request."""
    server = ProbedGunicorn(faulty_models_file, tmp_path_factory.mktemp("chatty"), LOG_LEVEL="DEBUG",
                            LOG_FORMAT="text", ALLOW_PRIVATE_IMAGE_URLS="true", MAX_IMAGES_PER_REQUEST="200")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def raw_get(port: int, target: bytes, host: bytes = b"gateway") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_path_cannot_forge_access_log_lines(chatty):
    with HealthProbe(chatty.url) as probe:
        answer = raw_get(chatty.port, b"/v1/nope%0a2030-01-01%2000:00:00,000%20INFO%20[1]%20gateway.access:"
                                      b"%20FORGED%20request_id=evil%20status=200")
    assert probe.healthy
    assert b" 404 " in answer.split(b"\r\n", 1)[0]
    def access_lines() -> list[str]:
        return [line for line in chatty.output().splitlines() if " gateway.access: " in line and "nope" in line]
    deadline = time.monotonic() + 5
    while not access_lines() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [line for line in chatty.output().splitlines() if line.startswith("2030-01-01")], "forged"
    access = access_lines()
    assert len(access) == 1 and 'path="/v1/nope\\n2030' in access[0], access


@pytest.mark.parametrize("target", [b"//v1/models", b"//evil.example/v1/models", b"/v1//models", b"//"])
def test_double_slash_paths_get_the_contracts_404(chatty, target):
    with HealthProbe(chatty.url) as probe:
        answer = raw_get(chatty.port, target, host=b"evil.example")
    assert probe.healthy
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 404 " in head.split(b"\r\n", 1)[0], answer[:300]
    assert b"\r\nx-request-id: " in head.lower() and b"location:" not in head.lower()
    assert json.loads(body)["error"]["code"] == "not_found"


def test_debug_logs_carry_no_query_strings_of_image_urls(chatty, fresh_faulty):
    url = f"http://127.0.0.1:{fresh_faulty.port}/steady/image.png?X-Amz-Signature=sekrit0123456789"
    with HealthProbe(chatty.url) as probe:
        resp = requests.post(chatty.url + "/v1/chat/completions", timeout=30, json={
            "model": "vision", "messages": [{"role": "user", "content": image_parts([url])}]})
    assert resp.status_code == 200, resp.text
    assert probe.healthy
    assert [s for s in fresh_faulty.seen if s.path == "/image.png"], "the image was not fetched"
    output = chatty.output()
    assert "/steady/image.png" in output, "no DEBUG line about the fetch: the test proves nothing"
    assert "sekrit0123456789" not in output
