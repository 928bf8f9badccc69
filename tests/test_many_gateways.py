"""Many gateways, one Redis (CONTRACT §7, §10): three gunicorn instances of two gevent workers each,
sharing a real redis-server, asked in turn by round-robin clients (a new connection per request,
so each instance's two workers both take requests)."""
from __future__ import annotations

import itertools
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from openai import OpenAI

from tests.conftest import Gunicorn
from tests.fixtures_upstream import chat
from tests.redis_server import RedisServer
from tests.standins.faulty import Fault, FaultyGradio
from tests.standins.hub import Space, StandInHub

INSTANCES, WORKERS = 3, 2
RPM_KEY, OPEN_KEY, BUSY_KEY = "sk-rpm-60-0123456789", "sk-open-0123456789", "sk-busy-0123456789"
APPS = ("fleet-one", "fleet-two", "fleet-quota", "fleet-ok")
# A 60/minute limit in Redis is a Lua moving window: every hit is counted atomically, so across all
# six workers exactly 60 pass within one minute. Stated tolerance: 0 (the run must take < 60 s).
TOLERANCE = 0
ACCESS_LINE = re.compile(r"\[(?P<pid>\d+)\] gateway\.access: request_id=(?P<id>\S+)")


class Fleet:
    def __init__(self, gateways: list[Gunicorn], redis: RedisServer, faulty: FaultyGradio, hub: StandInHub) -> None:
        self.gateways, self.redis, self.faulty, self.hub = gateways, redis, faulty, hub
        self._turn = itertools.count()

    def next_url(self) -> str:
        return self.gateways[next(self._turn) % len(self.gateways)].url

    def ask(self, key: str, model: str = "steady", url: str | None = None, **extra: Any) -> requests.Response:
        # No session: a new connection each time, taken by whichever worker accepts it first.
        return requests.post((url or self.next_url()) + "/v1/chat/completions", json=chat(model=model, **extra),
                             headers={"Authorization": f"Bearer {key}", "Connection": "close"}, timeout=30)

    def worker_pids(self, request_ids: set[str]) -> set[int]:
        """The worker processes (by pid, from their access lines) that answered these requests."""
        pids = set()
        for gateway in self.gateways:
            for line in gateway.output().splitlines():
                found = ACCESS_LINE.search(line)
                if found and found.group("id") in request_ids:
                    pids.add(int(found.group("pid")))
        return pids

    def calls(self, app: str) -> int:
        return sum(1 for s in self.faulty.requests_to(app)
                   if s.method == "POST" and s.path.startswith("/gradio_api/call/"))


@pytest.fixture(scope="module")
def fleet(faulty: FaultyGradio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for name in APPS:
        if name not in faulty.apps:
            faulty.add(name)
    hub = StandInHub()
    redis = RedisServer()
    gateways: list[Gunicorn] = []
    try:
        redis.start()
        hub.spaces.update({"fleet/one": Space(faulty.apps["fleet-one"].url),
                           "fleet/two": Space(faulty.apps["fleet-two"].url),
                           "fleet/quota": Space(faulty.apps["fleet-quota"].url),
                           "fleet/paused": Space(faulty.apps["fleet-ok"].url, stages=["PAUSED"]),
                           "fleet/ok": Space(faulty.apps["fleet-ok"].url)})
        tmp = tmp_path_factory.mktemp("fleet")
        (tmp / "models.yaml").write_text(yaml.safe_dump({"models": {
            "steady": {"space": faulty.apps["steady"].url},
            "shared": {"spaces": ["fleet/one", "fleet/two"]},
            "trio": {"spaces": ["fleet/quota", "fleet/paused", "fleet/ok"]}}}))
        (tmp / "keys.yaml").write_text(yaml.safe_dump({"keys": [
            {"name": "rpm-60", "key": RPM_KEY, "requests_per_minute": 60},
            {"name": "open", "key": OPEN_KEY},
            {"name": "busy", "key": BUSY_KEY, "requests_per_minute": 100000, "concurrent_streams": 50,
             "tokens_per_day": 10_000_000}]}))
        env = {"MODELS_FILE": str(tmp / "models.yaml"), "KEYS_FILE": str(tmp / "keys.yaml"),
               "BUILTIN_MODELS": "false", "REDIS_URL": redis.url, "HF_ENDPOINT": hub.url,
               # Generous: six workers and the stand-ins share a small, busy machine.
               "UPSTREAM_CONNECT_TIMEOUT": "10", "UPSTREAM_IDLE_TIMEOUT": "20", "UPSTREAM_TOTAL_TIMEOUT": "60",
               "SSE_KEEPALIVE": "5", "LOG_LEVEL": "INFO"}
        gateways = [Gunicorn(env, workers=WORKERS) for _ in range(INSTANCES)]
        for gateway in gateways:
            gateway.wait_ready(120)
        yield Fleet(gateways, redis, faulty, hub)
    finally:
        for gateway in gateways:
            gateway.stop()
        redis.stop()
        hub.stop()


@pytest.fixture
def fresh(fleet: Fleet) -> Fleet:
    """Nothing left in Redis or the stand-in's records from an earlier test."""
    fleet.redis.client().flushdb()
    fleet.faulty.forget()
    for name in APPS:
        fleet.faulty.apps[name].faults.clear()
    return fleet


def test_a_60_per_minute_key_allows_60_across_three_instances_of_two_workers(fresh: Fleet) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: fresh.ask(RPM_KEY), range(90)))
    elapsed = time.monotonic() - started
    assert elapsed < 60, "the run outlasted the limit's window: the count would mean nothing"
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert abs(statuses.count(200) - 60) <= TOLERANCE, statuses.count(200)
    refused = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" and int(r.headers["Retry-After"]) >= 1
               for r in refused)
    assert all(r.headers["x-ratelimit-limit-requests"] == "60" for r in answers)
    assert fresh.calls("steady") == 60                       # the refused ones never went upstream
    # All six workers took part: the limit held across them, not within one that took everything.
    assert len(fresh.worker_pids({r.headers["X-Request-Id"] for r in answers})) == INSTANCES * WORKERS


def test_a_cooldown_set_through_one_instance_is_honoured_by_the_others(fresh: Fleet) -> None:
    fresh.faulty.apps["fleet-one"].inject(Fault("status", status=429, retry_after="300"))
    first = fresh.ask(OPEN_KEY, "shared", url=fresh.gateways[0].url)
    assert first.status_code == 200, first.text
    assert (fresh.calls("fleet-one"), fresh.calls("fleet-two")) == (1, 1)
    # Failover would try fleet/one first (its fault is used up: it would answer) unless the others
    # know of the cooldown through Redis.
    for gateway in fresh.gateways[1:]:
        for _ in range(4):
            assert fresh.ask(OPEN_KEY, "shared", url=gateway.url).status_code == 200
    assert (fresh.calls("fleet-one"), fresh.calls("fleet-two")) == (1, 9)
    scraped = requests.get(fresh.gateways[2].url + "/metrics", timeout=10).text
    line = next(l for l in scraped.splitlines()
                if l.startswith('gateway_pool_cooldown_seconds{model="shared",space="fleet/one"}'))
    assert 250 < float(line.split()[-1]) <= 300


def test_a_pool_of_three_through_gunicorn_with_the_openai_sdk(fresh: Fleet) -> None:
    """The first Space is out of quota, the second paused: the client sees the third's answer."""
    fresh.faulty.apps["fleet-quota"].inject(Fault("status", status=429, retry_after="120"))
    client = OpenAI(base_url=fresh.gateways[0].url + "/v1", api_key=OPEN_KEY, max_retries=0)
    answer = client.chat.completions.create(model="trio", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "word0 word1 word2"
    stream = OpenAI(base_url=fresh.gateways[1].url + "/v1", api_key=OPEN_KEY, max_retries=0).chat.completions.create(
        model="trio", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "word0 word1 word2"
    assert fresh.calls("fleet-quota") == 1 and fresh.calls("fleet-ok") == 2
    assert fresh.hub.lookups_of("fleet/paused") == 1          # instance 1 knew it was paused
    cooling = {k.decode() for k in fresh.redis.client().keys("gcg:cool:*")}
    # Out of quota for anonymous callers (OPEN_KEY has no token); paused for everyone.
    assert cooling == {"gcg:cool:fleet/quota anonymous", "gcg:cool:fleet/paused"}


def test_redis_round_trips_per_request(fresh: Fleet) -> None:
    """Measured for the README: commands the gateway sends Redis per request (each one round trip:
    nothing on these paths is pipelined; a Lua script is one command)."""
    url = fresh.gateways[0].url

    def per_request(key: str, model: str, n: int = 10) -> tuple[float, list[str]]:
        fresh.ask(key, model, url=url)                       # scripts loaded, caches warm

        def work() -> None:
            for _ in range(n):
                assert fresh.ask(key, model, url=url).status_code == 200
        sent = fresh.redis.round_trips(work)
        return len(sent) / n, sorted({c.split()[0].strip('"') for c in sent})
    no_limits, _ = per_request(OPEN_KEY, "steady")
    all_limits, kinds = per_request(BUSY_KEY, "steady")
    pooled, _ = per_request(OPEN_KEY, "shared")
    print(f"\nRedis round trips per request: key without limits {no_limits:g}, key with requests + "
          f"streams + tokens limits {all_limits:g} ({', '.join(kinds)}), pooled model {pooled:g}")
    assert no_limits == 0
    assert all_limits <= 7
    assert pooled == 1


def test_redis_killed_mid_run_and_restarted_costs_no_request(fresh: Fleet) -> None:
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.append(fresh.ask(BUSY_KEY).status_code)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(statuses) >= 20, 60)
        fresh.redis.kill()
        killed_at = len(statuses)
        wait_until(lambda: len(statuses) >= killed_at + 30, 60)
        assert all(scrape(g.url, "gateway_redis_unreachable") == 1 for g in fresh.gateways)
        fresh.redis.start()
        restarted_at = len(statuses)
        # Every worker finds Redis again by itself (within RETRY_EVERY of its next request).
        wait_until(lambda: fresh.redis.client().exists("gcg:limits:LIMITER/requests/busy/100000/1/minute")
                   and all(scrape(g.url, "gateway_redis_unreachable") == 0 for g in fresh.gateways), 60,
                   lambda: (fresh.redis.client().keys("*"),
                            [scrape(g.url, "gateway_redis_unreachable") for g in fresh.gateways]))
        wait_until(lambda: len(statuses) >= restarted_at + 30, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(statuses) == {200}, sorted(set(statuses))      # not one request lost
    for gateway in fresh.gateways:
        out = gateway.output()
        down = out.count("Redis at REDIS_URL is unreachable")
        assert 1 <= down <= WORKERS, out[-3000:]              # one line per worker, not per request
        assert "Traceback" not in out
        assert scrape(gateway.url, "gateway_shared_state_fallbacks_total") > 0


def scrape(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{"))


def wait_until(predicate: Any, deadline: float, explain: Any = None) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not reached in time: {explain() if explain else ''}")
        time.sleep(0.05)           # polling a condition, with a deadline


def test_the_compose_file_runs_redis_and_two_gateways_behind_a_balancer() -> None:
    folder = Path(__file__).resolve().parent.parent / "deploy" / "many-gateways"
    services = yaml.safe_load((folder / "compose.yml").read_text())["services"]
    gateways = [s for name, s in services.items() if name.startswith("gateway-")]
    assert len(gateways) == 2 and "redis" in services and "balancer" in services
    assert all(g["environment"]["REDIS_URL"] == "redis://redis:6379/0" for g in gateways)
    assert all(g["command"] == ["gradio-chat-gateway", "serve"] for g in gateways)
    nginx = (folder / "nginx.conf").read_text()
    assert "server gateway-1:8000" in nginx and "server gateway-2:8000" in nginx
    assert "proxy_buffering off" in nginx
    from gateway.keys import parse_keys
    from gateway.registry import _parse
    assert parse_keys((folder / "keys.yaml").read_text(), "keys.yaml", {})
    assert len(_parse((folder / "models.yaml").read_text(), "models.yaml")["gemma-2-2b-pool"].members) == 3
