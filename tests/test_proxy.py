"""CONTRACT §3: USE_PROXY / PROXY_URL, through a real local HTTP proxy and a real SOCKS5 proxy."""
from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from tests.fixtures_upstream import chat
from tests.standins.hub import Space, StandInHub
from tests.standins.proxies import HttpProxy, Socks5Proxy


def port_of(url: str) -> int:
    return urlsplit(url).port or 80


@pytest.fixture
def http_proxy() -> Iterator[HttpProxy]:
    proxy = HttpProxy()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(params=["socks5", "socks5h"])
def socks_proxy(request: pytest.FixtureRequest) -> Iterator[Socks5Proxy]:
    proxy = Socks5Proxy(request.param)
    try:
        yield proxy
    finally:
        proxy.stop()


def ask(client: Any, model: str = "m") -> Any:
    return client.post("/v1/chat/completions", json=chat(model=model))


def test_http_proxy_carries_app_traffic(gateway: Any, http_proxy: HttpProxy, apps: dict[str, str]) -> None:
    client = gateway({"m": apps["echo"]}, USE_PROXY="true", PROXY_URL=http_proxy.url)
    resp = ask(client)
    assert resp.status_code == 200, resp.get_json()
    assert http_proxy.to(port_of(apps["echo"])) >= 3          # config, info, call, events


def test_socks5_proxy_carries_app_traffic(gateway: Any, socks_proxy: Socks5Proxy, apps: dict[str, str]) -> None:
    client = gateway({"m": apps["echo"]}, USE_PROXY="YES", PROXY_URL=socks_proxy.url)
    resp = ask(client)
    assert resp.status_code == 200, resp.get_json()
    assert socks_proxy.to(port_of(apps["echo"])) >= 1


def test_hub_lookups_go_through_the_proxy_too(gateway: Any, socks_proxy: Socks5Proxy, apps: dict[str, str]) -> None:
    """socks5h hands the host name to the proxy; socks5 resolves it in the gateway."""
    hub = StandInHub()
    try:
        hub.spaces["team/echo"] = Space(apps["echo"])
        endpoint = hub.url.replace("127.0.0.1", "localhost")
        client = gateway({"m": "team/echo"}, HF_ENDPOINT=endpoint, USE_PROXY="1", PROXY_URL=socks_proxy.url)
        assert ask(client).status_code == 200
        to_hub = [c for c in socks_proxy.carried if c.port == hub.served.port]
        assert to_hub, "the Hub look-up bypassed the proxy"
        expected = "socks-domain" if socks_proxy.scheme == "socks5h" else "socks-ip"
        assert {c.how for c in to_hub} == {expected}
    finally:
        hub.stop()


def test_http_proxy_carries_hub_lookups(gateway: Any, http_proxy: HttpProxy, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url, USE_PROXY="True", PROXY_URL=http_proxy.url)
    resp = ask(client)
    assert resp.status_code == 200, resp.get_json()
    assert http_proxy.to(hub.served.port) == 1


@pytest.mark.parametrize("flag", ["False", "false", "0", "no", "NO", ""])
def test_proxy_stays_off_unless_use_proxy_is_true(gateway: Any, http_proxy: HttpProxy, apps: dict[str, str],
                                                  flag: str) -> None:
    """The seed's USE_PROXY=False turned the proxy on. (A word outside true/false/1/0/yes/no stops start-up: test_config.)"""
    client = gateway({"m": apps["echo"]}, USE_PROXY=flag, PROXY_URL=http_proxy.url)
    assert ask(client).status_code == 200
    assert http_proxy.carried == []


def test_unreachable_proxy_is_503(gateway: Any, apps: dict[str, str]) -> None:
    from tests.fixtures_upstream import free_port
    client = gateway({"m": apps["echo"]}, USE_PROXY="true", PROXY_URL=f"http://127.0.0.1:{free_port()}")
    resp = ask(client)
    assert resp.status_code == 503
