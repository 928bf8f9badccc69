"""CONTRACT §3: the upstream settings read from the environment."""
from __future__ import annotations

import pytest

import os

from gateway.config import ConfigError, cpu_limit, load_server_settings, load_settings

PROXY = "socks5h://user:s3cretpass@127.0.0.1:1080"


@pytest.mark.parametrize("flag", ["true", "TRUE", "True", "1", "yes", "YES", " yes "])
def test_use_proxy_true_1_yes_turn_the_proxy_on(flag: str) -> None:
    settings = load_settings({"USE_PROXY": flag, "PROXY_URL": PROXY})
    assert settings.proxies == {"http": PROXY, "https": PROXY}


@pytest.mark.parametrize("flag", ["False", "false", "0", "no", "NO", ""])
def test_false_0_no_or_empty_leave_the_proxy_off(flag: str) -> None:
    assert load_settings({"USE_PROXY": flag, "PROXY_URL": PROXY}).proxies == {}


@pytest.mark.parametrize("name", ["USE_PROXY", "BUILTIN_MODELS", "ALLOW_PRIVATE_IMAGE_URLS"])
@pytest.mark.parametrize("flag", ["off", "on", "y", "enabled", "nope", "ture"])
def test_a_boolean_outside_true_false_1_0_yes_no_stops_start_up(name: str, flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({name: flag, "PROXY_URL": PROXY})
    assert str(err.value) == f"{name}: must be one of true/false/1/0/yes/no, got {flag!r}"


def test_builtin_models_nope_is_an_error_not_an_empty_table() -> None:
    with pytest.raises(ConfigError, match="^BUILTIN_MODELS:"):
        load_settings({"BUILTIN_MODELS": "nope"})
    assert load_settings({"BUILTIN_MODELS": "no"}).builtin_models is False


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


@pytest.mark.parametrize("name, value, expected", [
    ("WEB_CONCURRENCY", "abc", "WEB_CONCURRENCY: must be a whole number, got 'abc'"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY: must be a finite number greater than 0 and at most 1024, got '0'"),
    ("WORKER_CONNECTIONS", "10k", "WORKER_CONNECTIONS: must be a whole number, got '10k'"),
    ("GRACEFUL_TIMEOUT", "30s", "GRACEFUL_TIMEOUT: must be a whole number of seconds, got '30s'"),
    ("GUNICORN_TIMEOUT", "2m", "GUNICORN_TIMEOUT: must be a whole number of seconds, got '2m'"),
    ("PORT", "80800", "PORT: must be a finite number greater than 0 and at most 65535, got '80800'"),
    ("PORT", "http", "PORT: must be a whole number, got 'http'"),
    ("LISTEN", "0.0.0.0:8000", "LISTEN: must be an address or host name without a port (the port is PORT), "
                               "got '0.0.0.0:8000'"),
    ("LISTEN", "my host", "LISTEN: must be an address or host name, got 'my host'"),
    ("HUB_TIMEOUT", "never", "HUB_TIMEOUT: must be a number of seconds, got 'never'"),
    ("STREAM_STATUS", "loud", "STREAM_STATUS: must be off or reasoning, got 'loud'"),
])
def test_every_server_setting_is_checked_by_the_server_and_the_commands_alike(name, value, expected) -> None:
    with pytest.raises(ConfigError) as err:
        load_server_settings({name: value}) if name not in {"HUB_TIMEOUT", "STREAM_STATUS"} else load_settings(
            {name: value})
    assert str(err.value) == expected
    with pytest.raises(ConfigError):        # what the commands load checks gunicorn's settings too
        load_settings({name: value})


def test_server_settings_defaults_and_ipv6_bind() -> None:
    server = load_server_settings({"WEB_CONCURRENCY": "3"})
    assert (server.bind, server.workers, server.workers_source, server.worker_connections,
            server.graceful_timeout, server.timeout, server.access_log) == \
        ("0.0.0.0:8000", 3, "WEB_CONCURRENCY", 10000, 30, 120, None)
    assert load_server_settings({"LISTEN": "::1", "PORT": "9000"}).bind == "[::1]:9000"
    assert load_settings({}).hub_timeout == 30.0 and load_settings({}).stream_status == "off"
    assert load_settings({"STREAM_STATUS": "Reasoning"}).stream_status == "reasoning"


def _cgroup(tmp_path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize("files, workers", [
    ({"cpu.max": "150000 100000\n"}, 2),                      # v2: 1.5 CPUs -> 2 workers
    ({"cpu.max": "50000 100000\n"}, 1),                       # half a CPU: still one worker
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),   # v1
])
def test_workers_default_to_the_containers_cpu_limit(tmp_path, monkeypatch, files, workers) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))   # an 8-core host
    server = load_server_settings({}, cgroup_root=_cgroup(tmp_path, files))
    assert (server.workers, server.workers_source) == (workers, "container CPU limit")


@pytest.mark.parametrize("files", [{"cpu.max": "max 100000\n"},
                                   {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, {}])
def test_without_a_cpu_limit_workers_are_the_cores(tmp_path, monkeypatch, files) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(3)))
    assert cpu_limit(_cgroup(tmp_path, files)) == (3, "CPU cores")
