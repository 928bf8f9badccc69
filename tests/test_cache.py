"""CONTRACT §7: the per-app metadata cache: bounded, expiring, built once, rebuilt on a redeploy."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from gateway.upstream.cache import BuildOnceCache
from tests.fixtures_upstream import USER_TOKEN, chat, free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Builder:
    """Counts builds; can hold each build until released."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.builds = 0
        self.hold = hold
        self.lock = threading.Lock()

    def __call__(self) -> dict[str, int]:
        with self.lock:
            self.builds += 1
            n = self.builds
        if self.hold is not None:
            assert self.hold.wait(10)
        return {"build": n}


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache: BuildOnceCache[Any] = BuildOnceCache(maxsize=2, ttl=60)
    build = Builder()
    cache.get("a", build), cache.get("b", build), cache.get("a", build)
    cache.get("c", build)                         # evicts b, the least recently used
    assert sorted(cache.keys()) == ["a", "c"] and len(cache) == 2
    cache.get("b", build)
    assert build.builds == 4


def test_entries_expire_and_are_rebuilt() -> None:
    clock = Clock()
    cache: BuildOnceCache[Any] = BuildOnceCache(maxsize=8, ttl=30, clock=clock)
    build = Builder()
    assert cache.get("k", build) == {"build": 1}
    clock.now += 29
    assert cache.get("k", build) == {"build": 1}
    clock.now += 2
    assert cache.get("k", build) == {"build": 2}


def test_concurrent_misses_build_once() -> None:
    cache: BuildOnceCache[Any] = BuildOnceCache()
    release = threading.Event()
    build = Builder(release)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", build))) for _ in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: cache.waiting("k") == 7)      # one builds, seven wait for it
    release.set()
    for t in threads:
        t.join(5)
    assert build.builds == 1 and results == [{"build": 1}] * 8


def test_a_failed_build_reaches_every_waiter_and_is_not_cached() -> None:
    cache: BuildOnceCache[Any] = BuildOnceCache()
    with pytest.raises(ZeroDivisionError):
        cache.get("k", lambda: 1 / 0)
    assert cache.get("k", lambda: "fine") == "fine"


def test_refresh_rebuilds_once_for_every_caller_holding_the_stale_value() -> None:
    cache: BuildOnceCache[Any] = BuildOnceCache()
    build = Builder()
    stale = cache.get("k", build)
    fresh = cache.refresh("k", stale, build)
    assert cache.refresh("k", stale, build) is fresh          # a second caller gets the same rebuild
    assert build.builds == 2


def test_many_requests_to_a_new_app_read_its_api_once(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(config_pause=0.5)
    client = gateway({"m": app.url})
    start = threading.Barrier(6)
    statuses: list[int] = []

    def ask() -> None:
        local = client.application.test_client()
        start.wait(5)
        statuses.append(local.post("/v1/chat/completions", json=chat()).status_code)
    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert statuses == [200] * 6
    assert sum(1 for s in app.seen if s.path == "/config") == 1


def test_made_up_tokens_share_the_entry_of_a_public_app(gateway: Any, fake_gradio: Any) -> None:
    """Issue 12, finding 8: each invented `hf_…` bearer got its own entry (two metadata fetches
    each, and other apps evicted). What a public app shows does not depend on the credential."""
    app = fake_gradio()
    client = gateway({"m": app.url})
    for i in range(30):
        token = f"hf_madeUp{i:04d}abcdefghijklmnopqrstuv"
        resp = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    keys = client.application.extensions["gradio_chat_gateway"].upstream.apps.keys()
    assert keys == [(app.url, "public")]
    assert sum(1 for s in app.seen if s.path == "/config") == 1


def test_a_private_app_is_keyed_by_a_hash_of_the_credential_never_the_token(gateway: Any,
                                                                           fake_gradio: Any) -> None:
    app = fake_gradio(require_token=USER_TOKEN)
    client = gateway({"m": app.url})
    for _ in range(2):
        resp = client.post("/v1/chat/completions", json=chat(), headers={"X-HF-Token": USER_TOKEN})
        assert resp.status_code == 200, resp.get_json()
    for i in range(10):     # refused tokens build nothing: no entry, nothing evicted
        resp = client.post("/v1/chat/completions", json=chat(),
                           headers={"X-HF-Token": f"hf_madeUp{i:04d}abcdefghijklmnopqrstuv"})
        assert resp.status_code == 401
    keys = client.application.extensions["gradio_chat_gateway"].upstream.apps.keys()
    assert len(keys) == 1 and keys[0][1] != "public"
    assert USER_TOKEN not in repr(keys) and USER_TOKEN[3:20] not in repr(keys)


@pytest.fixture
def redeployable() -> Iterator[Any]:
    """A real Gradio app on a fixed port that a test can replace by a different one."""
    from tests.standins import apps as standin_apps

    port = free_port()
    state = {"demo": standin_apps.serve(standin_apps.version_one, port)}

    def redeploy() -> None:
        state["demo"].close()
        state["demo"] = standin_apps.serve(standin_apps.version_two, port)
    redeploy.url = f"http://127.0.0.1:{port}/"  # type: ignore[attr-defined]
    try:
        yield redeploy
    finally:
        state["demo"].close()


def test_redeployed_app_is_described_again_once_and_users_see_no_error(gateway: Any, redeployable: Any) -> None:
    client = gateway({"m": redeployable.url})
    cache = client.application.extensions["gradio_chat_gateway"].upstream.apps
    first = client.post("/v1/chat/completions", json=chat("hi"))
    assert first.get_json()["choices"][0]["message"]["content"] == "v1: hi"
    redeployable()                                # /chat is gone; /respond takes a system prompt
    second = client.post("/v1/chat/completions", json=chat("hi"))
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["choices"][0]["message"]["content"] == "v2: hi"
    third = client.post("/v1/chat/completions", json=chat("again"))
    assert third.get_json()["choices"][0]["message"]["content"] == "v2: again"
    assert cache.misses == 2                      # built, rebuilt once, then served from the cache


def test_app_errors_do_not_rebuild_the_metadata(gateway: Any, apps: dict[str, str]) -> None:
    client = gateway({"m": apps["failing"]})
    cache = client.application.extensions["gradio_chat_gateway"].upstream.apps
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=chat()).status_code == 502
    assert cache.misses == 1


# ---------------------------------------------------------------- issue 12, finding 8, live

@pytest.fixture(scope="module")
def live(faulty: Any, faulty_models_file: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A live gunicorn worker in front of the stand-in, whose RSS can be read."""
    from tests.fixtures_faults import ProbedGunicorn

    server = ProbedGunicorn(faulty_models_file, tmp_path_factory.mktemp("cache"), UPSTREAM_IDLE_TIMEOUT="20",
                            UPSTREAM_TOTAL_TIMEOUT="60")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_300_made_up_tokens_read_a_public_apps_metadata_once_in_a_live_worker(live: Any, fresh_faulty: Any) -> None:
    """Issue 12, finding 8: each invented `hf_…` bearer got its own entry of the app's metadata
    (a /config and an /info fetch each, other apps evicted, RSS growing with every entry). The
    app's /config is 400 KiB here, as real apps' are."""
    import requests

    from tests.health_probe import HealthProbe

    def ask(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(live.url + "/v1/chat/completions", json={**chat(), "model": "layout"},
                             headers=headers, timeout=60).status_code

    def metadata_fetches() -> int:
        return sum(1 for s in fresh_faulty.requests_to("layout") if s.path in ("/config", "/gradio_api/info"))

    assert ask(None) == 200                         # the app's metadata, read once: not the attack
    before, fetched = live.probe()["rss_kib"], metadata_fetches()
    tokens = [f"hf_madeUp{i:04d}abcdefghijklmnopqrstuv" for i in range(300)]
    statuses: list[int] = []
    with HealthProbe(live.url) as probe:
        started = time.monotonic()
        threads = [threading.Thread(target=lambda part=tokens[i::10]: statuses.extend(ask(t) for t in part))
                   for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
    grown = (live.probe()["rss_kib"] - before) / 1024
    fetches = metadata_fetches() - fetched
    print(f"\nfinding 8: 300 made-up tokens: {fetches} metadata fetches, RSS +{grown:.0f} MiB, {elapsed:.1f}s, "
          f"/healthz worst {probe.worst * 1000:.0f} ms")
    assert statuses == [200] * 300
    assert fetches == 0
    assert grown < 16 and probe.healthy
