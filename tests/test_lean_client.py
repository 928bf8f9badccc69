"""The lean client (gateway/upstream/lean.py) that carries the two hot calls on direct connections:
which calls take it, TLS as requests verifies it, connection reuse, redirects, bounded reads,
timeouts. Real servers on 127.0.0.1, nothing patched."""
from __future__ import annotations

import gzip
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import trustme

from gateway.config import Settings
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.upstream import lean
from gateway.upstream.bounded import READ_SIZE
from gateway.upstream.protocol import Gradio, UpstreamUnreachable, abort, iter_events, release
from gateway.upstream.session import make_session
from tests.fixtures_upstream import chat, free_port
from tests.standins.proxies import relay
from tests.standins.server import QuietHandler
from tests.test_transport import recorder, send_event_stream  # noqa: F401 - recorder: test_transport's fixture

EVENTS = [b'event: generating\ndata: ["he"]\n\n', b'event: complete\ndata: ["hello"]\n\n']


def gradio_at(url: str, headers: dict[str, str] | None = None, **settings: Any) -> Gradio:
    return Gradio(make_session(Settings(**settings)), url, headers or {}, connect_timeout=2, read_timeout=2)


def answer_events(handler: QuietHandler) -> bool:
    if handler.command == "POST":
        handler.send_json(200, {"event_id": "e1"})
    else:
        send_event_stream(handler, EVENTS)
    return True


def one_job(gradio: Gradio) -> list[str]:
    event_id = gradio.submit("/chat", ["hi"], None)
    resp = gradio.open_events("/chat", event_id)
    stream = iter_events(resp, "call /chat")
    kinds = []
    for event in stream:
        kinds.append(event.kind)
        if event.kind == "complete":
            break
    assert release(resp, stream)
    return kinds


# ------------------------------------------------------------------ which calls take it


def test_the_hot_calls_of_a_direct_app_take_the_lean_client_and_share_one_connection(recorder: Any) -> None:
    server = recorder(answer_events)
    gradio = gradio_at(server.url, {"X-IP-Token": "tok"})
    for _ in range(5):
        assert one_job(gradio) == ["generating", "complete"]
    assert isinstance(gradio.open_events("/chat", "e1"), lean.Response)
    assert server.connections == 1                     # 0 new connections per completion
    assert all(fields["x-ip-token"] == "tok" for _, fields, _ in server.requests)


def test_a_configured_proxy_keeps_the_hot_calls_on_requests(recorder: Any) -> None:
    server = recorder(answer_events)
    session = make_session(Settings(proxy_url=f"http://127.0.0.1:{free_port()}"))
    assert session.lean is not None and session.lean.route(server.url) is None


def test_the_environment_chooses_a_proxy_only_where_the_session_trusts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """As requests would: HTTP(S)_PROXY and NO_PROXY count when trust_env is on (the gateway's
    session turns it off: USE_PROXY/PROXY_URL alone choose a proxy)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "bypassed.test")
    session = make_session(Settings())
    assert session.lean.route("http://app.test/") is not None          # trust_env is off
    session.trust_env = True
    assert session.lean.route("http://app.test/") is None              # proxied: requests carries it
    assert session.lean.route("http://bypassed.test/") is not None     # NO_PROXY: direct
    assert session.lean.route("http://bücher.test/") is None           # IDNA: requests prepares it


def test_a_header_requests_would_refuse_keeps_the_call_on_requests(recorder: Any) -> None:
    server = recorder(answer_events)
    gradio = gradio_at(server.url, {"X-IP-Token": "a\r\nX-Smuggled: 1"})
    with pytest.raises(UpstreamError):
        gradio.submit("/chat", ["hi"], None)
    assert gradio._lean_route() is None                                 # noqa: SLF001
    assert not any("x-smuggled" in fields for _, fields, _ in server.requests)


# ------------------------------------------------------------------ redirects


def test_a_307_on_the_event_stream_is_followed_on_the_same_host_through_requests(recorder: Any) -> None:
    def answer(handler: QuietHandler) -> bool:
        if handler.command == "GET" and "moved" not in handler.path:
            handler.send_response(307)
            handler.send_header("Location", "/moved" + handler.path)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True
        return answer_events(handler)
    server = recorder(answer)
    gradio = gradio_at(server.url, {"X-IP-Token": "tok"})
    assert one_job(gradio) == ["generating", "complete"]
    line, fields, _ = server.requests[-1]
    assert line.startswith("GET /moved/gradio_api/call/chat/e1 ") and fields["x-ip-token"] == "tok"


def test_a_303_to_another_host_on_the_submit_is_refused(recorder: Any) -> None:
    elsewhere = recorder(answer_events)

    def answer(handler: QuietHandler) -> bool:
        handler.send_response(303)
        handler.send_header("Location", elsewhere.url.replace("127.0.0.1", "localhost"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True
    gradio = gradio_at(recorder(answer).url, {"X-IP-Token": "tok"})
    with pytest.raises(UpstreamError, match="another host"):
        gradio.submit("/chat", ["hi"], None)
    assert not elsewhere.requests


# ------------------------------------------------------------------ stale connections, timeouts, errors


def test_a_pooled_connection_that_dies_before_any_answer_is_replaced_once(recorder: Any) -> None:
    """The app closes the kept-alive connection as the request arrives (no FIN beforehand, so
    the liveness check cannot see it): the request goes again on a new connection, once."""
    served = {"n": 0}

    def answer(handler: QuietHandler) -> bool:
        served["n"] += 1
        if served["n"] == 2:                      # the second request: read, never answered
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return True
        handler.send_json(200, {"event_id": f"e{served['n']}"})
        return True
    server = recorder(answer)
    gradio = gradio_at(server.url)
    assert gradio.submit("/chat", ["hi"], None) == "e1"
    assert gradio.submit("/chat", ["hi"], None) == "e3"
    assert server.connections == 2


def test_a_fresh_connection_that_closes_without_an_answer_is_not_resent(recorder: Any) -> None:
    def answer(handler: QuietHandler) -> bool:
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return True
    server = recorder(answer)
    with pytest.raises(UpstreamUnavailable, match="broke"):
        gradio_at(server.url).submit("/chat", ["hi"], None)
    assert len(server.requests) == 1


def test_an_app_that_stops_answering_is_an_upstream_timeout(recorder: Any) -> None:
    release_it = threading.Event()

    def answer(handler: QuietHandler) -> bool:
        release_it.wait(10)
        return False
    server = recorder(answer)
    try:
        with pytest.raises(UpstreamTimeout, match="stopped answering"):
            gradio_at(server.url).submit("/chat", ["hi"], None)
    finally:
        release_it.set()


def test_a_refused_connection_is_unreachable_and_says_so() -> None:
    with pytest.raises(UpstreamUnreachable, match="connection refused by 127.0.0.1"):
        gradio_at(f"http://127.0.0.1:{free_port()}/").submit("/chat", ["hi"], None)


def test_an_error_status_reads_a_bounded_body_and_names_the_error(recorder: Any) -> None:
    def answer(handler: QuietHandler) -> bool:
        handler.send_json(429, {"error": "Try again in 0:01:00"})
        return True
    from gateway.errors import UpstreamQuota
    with pytest.raises(UpstreamQuota) as caught:
        gradio_at(recorder(answer).url).submit("/chat", ["hi"], None)
    assert caught.value.retry_after == 60


# ------------------------------------------------------------------ bounded reads


def test_a_huge_chunk_arrives_in_pieces_of_at_most_read_size(recorder: Any) -> None:
    big = b'event: complete\ndata: ["' + b"x" * (3 * READ_SIZE) + b'"]\n\n'

    def answer(handler: QuietHandler) -> bool:
        send_event_stream(handler, [big])
        return True
    gradio = gradio_at(recorder(answer).url)
    resp = gradio.open_events("/chat", "e1")
    sizes = [len(piece) for piece in resp.pieces()]
    assert sum(sizes) == len(big) and max(sizes) <= READ_SIZE and len(sizes) > 1


def test_a_gzipped_stream_comes_raw_from_the_client_and_is_inflated_within_bounds(recorder: Any) -> None:
    body = gzip.compress(b"".join(EVENTS))

    def answer(handler: QuietHandler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True
    gradio = gradio_at(recorder(answer).url)
    resp = gradio.open_events("/chat", "e1")
    assert resp.gateway_encoding == "gzip"
    assert [e.kind for e in iter_events(resp, "call /chat")] == ["generating", "complete"]
    assert b"".join(gradio.open_events("/chat", "e1").pieces()) == body        # never inflated by the client


def test_an_oversized_answer_is_cut_at_max_upstream_bytes(recorder: Any) -> None:
    def answer(handler: QuietHandler) -> bool:
        handler.send_json(200, {"event_id": "e" * 5000})
        return True
    gradio = Gradio(make_session(Settings()), recorder(answer).url, {}, connect_timeout=2, read_timeout=2,
                    max_bytes=1000)
    with pytest.raises(UpstreamError, match="oversized"):
        gradio.submit("/chat", ["hi"], None)


def test_an_oversized_head_is_a_broken_answer(recorder: Any) -> None:
    def answer(handler: QuietHandler) -> bool:
        handler.send_response(200)
        for i in range(200):
            handler.send_header(f"X-Filler-{i}", "y" * 1000)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")
        return True
    with pytest.raises(UpstreamError, match="broke"):
        gradio_at(recorder(answer).url).submit("/chat", ["hi"], None)


def test_abort_wakes_a_reader_blocked_on_a_silent_stream(recorder: Any) -> None:
    stop = threading.Event()

    def answer(handler: QuietHandler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        stop.wait(10)
        return False
    server = recorder(answer)
    try:
        resp = Gradio(make_session(Settings()), server.url, {}, connect_timeout=2, read_timeout=30) \
            .open_events("/chat", "e1")
        threading.Timer(0.2, abort, [resp]).start()
        with pytest.raises(UpstreamError):
            list(iter_events(resp, "call /chat"))
    finally:
        stop.set()


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


class TLSFront:
    """TLS on 127.0.0.1 in front of a plain HTTP server, with a certificate for `name`; records
    the SNI each handshake asked for."""

    def __init__(self, ca: trustme.CA, name: str, backend_port: int) -> None:
        self.server_names: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = lambda sock, server_name, ctx: self.server_names.append(server_name)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    tls = context.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with socket.create_connection(("127.0.0.1", backend_port)) as backend:
                    relay(tls, backend)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"https://localhost:{self.port}/"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_front(ca: trustme.CA, recorder: Any) -> Iterator[Callable[..., TLSFront]]:
    started: list[TLSFront] = []

    def start(name: str = "localhost", backend: Any = None) -> TLSFront:
        backend = backend or recorder(answer_events)
        started.append(TLSFront(ca, name, backend.served.port))
        return started[-1]
    yield start
    for front in started:
        front.stop()


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
    return path


def test_tls_to_a_trusted_app_verifies_it_and_sends_sni(tls_front: Any, ca_bundle: str) -> None:
    front = tls_front()
    gradio = gradio_at(front.url)
    assert gradio.session.verify == ca_bundle
    assert one_job(gradio) == ["generating", "complete"]
    assert one_job(gradio) == ["generating", "complete"]
    assert gradio._lean_route().scheme == "https"                      # noqa: SLF001
    assert front.server_names == ["localhost"]                         # SNI, and one connection for both jobs


def test_tls_to_an_untrusted_app_fails_with_the_reason(tls_front: Any) -> None:
    front = tls_front()
    with pytest.raises(UpstreamUnavailable, match=r"TLS failed with localhost \(CERTIFICATE_VERIFY_FAILED\)"):
        gradio_at(front.url).submit("/chat", ["hi"], None)


def test_tls_with_a_certificate_for_another_host_fails_with_the_reason(tls_front: Any, ca_bundle: str) -> None:
    front = tls_front(name="gradio.example")
    with pytest.raises(UpstreamUnavailable, match=r"TLS failed with localhost \(CERTIFICATE_VERIFY_FAILED\)"):
        gradio_at(front.url).submit("/chat", ["hi"], None)


def test_a_completion_from_an_app_behind_tls_trusted_through_requests_ca_bundle(
        gateway: Any, apps: dict[str, str], tls_front: Any, ca_bundle: str) -> None:
    """The cold calls (requests) and the hot ones (the lean client) trust the same CA."""
    port = int(apps["echo"].rstrip("/").rsplit(":", 1)[1])

    class Backend:
        served = type("S", (), {"port": port})

    front = tls_front(backend=Backend)
    client = gateway({"m": front.url})
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 200, resp.get_json()
    assert set(front.server_names) == {"localhost"}


def test_a_completion_from_an_untrusted_tls_app_is_a_clear_error(gateway: Any, apps: dict[str, str],
                                                                tls_front: Any) -> None:
    port = int(apps["echo"].rstrip("/").rsplit(":", 1)[1])

    class Backend:
        served = type("S", (), {"port": port})

    client = gateway({"m": tls_front(backend=Backend).url})
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 503
    assert "TLS failed with localhost (CERTIFICATE_VERIFY_FAILED)" in resp.get_json()["error"]["message"]


def test_requests_and_the_lean_client_read_the_same_bundle(ca_bundle: str) -> None:
    session = make_session(Settings())
    assert session.verify == ca_bundle
    assert requests.Session().merge_environment_settings("https://x/", {}, None, None, None)["verify"] == ca_bundle


def test_pools_are_bounded_and_an_evicted_hosts_connections_are_closed(recorder: Any) -> None:
    first, second = recorder(answer_events), recorder(answer_events)
    session = make_session(Settings())
    session.lean.max_pools = 1
    at_first, at_second = (Gradio(session, s.url, {}, connect_timeout=2, read_timeout=2) for s in (first, second))
    one_job(at_first)
    one_job(at_second)                       # the first host's pool is dropped, its connection closed
    assert list(session.lean.pools) == [("http", "127.0.0.1", second.served.port)]
    one_job(at_first)
    assert (first.connections, second.connections) == (2, 1)
