"""CONTRACT §3: the upstream settings read from the environment."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings

PROXY = "socks5h://user:s3cretpass@127.0.0.1:1080"


@pytest.mark.parametrize("flag", ["true", "TRUE", "True", "1", "yes", "YES", " yes "])
def test_use_proxy_true_1_yes_turn_the_proxy_on(flag: str) -> None:
    settings = load_settings({"USE_PROXY": flag, "PROXY_URL": PROXY})
    assert settings.proxies == {"http": PROXY, "https": PROXY}


@pytest.mark.parametrize("flag", ["False", "false", "0", "no", "off", "on", "y", "", "enabled"])
def test_anything_else_leaves_the_proxy_off(flag: str) -> None:
    assert load_settings({"USE_PROXY": flag, "PROXY_URL": PROXY}).proxies == {}


def test_proxy_url_alone_does_not_turn_the_proxy_on() -> None:
    assert load_settings({"PROXY_URL": PROXY}).proxies == {}


@pytest.mark.parametrize("url", ["http://proxy:3128", "https://proxy:443", "socks5://127.0.0.1:1080",
                                 "socks5h://localhost:1080", "SOCKS5H://localhost:1080"])
def test_the_four_proxy_schemes_are_accepted(url: str) -> None:
    assert load_settings({"USE_PROXY": "1", "PROXY_URL": url}).proxy_url == url


@pytest.mark.parametrize("url", ["ftp://proxy:21", "proxy:3128", "socks4://proxy:1080", "http://",
                                 "http://proxy:notaport", "ftp://user:s3cretpass@proxy:21"])
def test_bad_proxy_url_stops_start_up_naming_the_variable_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"USE_PROXY": "yes", "PROXY_URL": url})
    assert str(err.value).startswith("PROXY_URL:")
    assert "s3cretpass" not in str(err.value)


def test_use_proxy_without_a_url_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="^PROXY_URL:"):
        load_settings({"USE_PROXY": "true"})


def test_proxy_password_is_not_in_the_settings_repr() -> None:
    assert "s3cretpass" not in repr(load_settings({"USE_PROXY": "true", "PROXY_URL": PROXY}))


def test_operator_token_is_not_in_the_settings_repr() -> None:
    from tests.fixtures_upstream import OPERATOR_TOKEN
    assert OPERATOR_TOKEN not in repr(load_settings({"HF_TOKEN": OPERATOR_TOKEN}))


@pytest.mark.parametrize("name", ["UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_IDLE_TIMEOUT",
                                  "UPSTREAM_TOTAL_TIMEOUT", "SSE_KEEPALIVE"])
@pytest.mark.parametrize("value", ["soon", "-1", "0", "nan", "inf"])
def test_bad_timeout_stops_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}:"):
        load_settings({name: value})


def test_timeouts_default_to_the_contract() -> None:
    settings = load_settings({})
    assert (settings.connect_timeout, settings.idle_timeout, settings.total_timeout, settings.sse_keepalive) == \
        (10.0, 60.0, 600.0, 15.0)
    assert settings.hf_endpoint == "https://huggingface.co"


def test_fractional_timeouts_are_accepted() -> None:
    settings = load_settings({"UPSTREAM_IDLE_TIMEOUT": "1.5", "SSE_KEEPALIVE": "0.3"})
    assert (settings.idle_timeout, settings.sse_keepalive) == (1.5, 0.3)


def test_hf_endpoint_must_be_http() -> None:
    with pytest.raises(ConfigError, match="^HF_ENDPOINT:"):
        load_settings({"HF_ENDPOINT": "ftp://hub"})
    assert load_settings({"HF_ENDPOINT": "http://127.0.0.1:9/"}).hf_endpoint == "http://127.0.0.1:9"
