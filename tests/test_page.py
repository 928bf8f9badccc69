"""The status page (GET /), in a real browser: headless Chromium (Debian's package) driven by Playwright.

A live gunicorn serves a real Gradio echo app as `demo`, an app that is stopped as `stopped`, and a
model whose id and Space carry markup. The page must show the demo as ready after a request,
stream a reply in the try-it box, show the stopped app as unreachable after "Check now", escape
what the models file said, and show nothing private without a key when keys are on. Another
gateway, in front of stand-in Spaces resolved by a stand-in Hub, shows a pool member cooling down,
a quota's time left and a missing Space. The page's script works under an init_app prefix. A
screenshot of each run is kept in test-artifacts/ (and the README's picture comes from one).
Check now's admission (a key's allow-list and limit) goes through Flask's test client.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from tests import gradio_apps
from tests.conftest import ROOT, Gunicorn, free_port
from tests.fixtures_upstream import chat
from tests.standins.faulty import Fault, FaultyGradio
from tests.standins.hub import Space, StandInHub

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Chromium is not installed (apt-get install chromium); CI installs it")

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def page_apps() -> Iterator[dict[str, str]]:
    demo, url = gradio_apps.serve(gradio_apps.echo_app, free_port())
    stopped, stopped_url = gradio_apps.serve(gradio_apps.plain_app, free_port())
    try:
        yield {"demo": url, "stopped": stopped_url, "_stopped": stopped}
    finally:
        demo.close()
        stopped.close()


def _gateway(tmp: Path, apps: dict[str, str], **env: str) -> Gunicorn:
    models = tmp / "models.yaml"
    models.write_text(yaml.safe_dump({"models": {
        "demo": {"space": apps["demo"], "description": "the echo app"},
        "stopped": {"space": apps["stopped"]},
        "odd-model": {"space": "http://127.0.0.1:9/?q=<script>alert(1)</script>"},
    }}))
    return Gunicorn({"MODELS_FILE": str(models), "BUILTIN_MODELS": "false", "UPSTREAM_CONNECT_TIMEOUT": "2",
                     "UPSTREAM_IDLE_TIMEOUT": "10", **env}).wait_ready()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


def test_the_page_shows_states_streams_a_reply_and_probes(page_apps, browser, tmp_path):
    gw = _gateway(tmp_path, page_apps)
    try:
        # A request the demo answers, and one the stopped app can no longer answer.
        ok = requests.post(gw.url + "/v1/chat/completions", timeout=30,
                           json={"model": "demo", "messages": [{"role": "user", "content": "warm up"}]})
        assert ok.status_code == 200
        page = browser.new_page()
        page.goto(gw.url + "/")
        assert page.title() == "gradio-chat-gateway"
        demo_row = page.locator('tr[data-model="demo"]')
        assert demo_row.get_attribute("data-state") == "ready"
        assert "6.31.0" in demo_row.inner_text() and "/call" in demo_row.inner_text()
        # What the models file said is shown as text, never run as markup.
        assert "<script>alert(1)</script>" in page.locator('tr[data-model="odd-model"]').inner_text()
        # Try it: a streamed reply appears in the box.
        page.select_option("#model", "demo")
        page.fill("#prompt", "hello from the browser")
        page.click("#try button[type=submit]")
        page.wait_for_function("document.getElementById('reply').textContent.includes('hello from the browser')",
                               timeout=30000)
        assert "echo" in page.inner_text("#reply")
        # The stopped app: stop it, then "Check now" shows it unreachable.
        page_apps["_stopped"].close()
        page.click('button.probe[data-model="stopped"]')
        page.wait_for_selector('tr[data-model="stopped"][data-state="unreachable"]', timeout=30000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
        page.close()
    finally:
        gw.stop()


def test_with_keys_the_page_shows_nothing_private_until_a_key_is_given(page_apps, browser, tmp_path):
    gw = _gateway(tmp_path, page_apps, GATEWAY_API_KEYS="page-key-1")
    try:
        html = requests.get(gw.url + "/", timeout=10).text
        assert page_apps["demo"] not in html and 'data-model="demo"' not in html
        assert requests.get(gw.url + "/?part=models", timeout=10).status_code == 401
        page = browser.new_page()
        page.goto(gw.url + "/")
        page.fill("#key", "wrong")
        page.click("#keyform button")
        page.wait_for_function("document.getElementById('table').textContent.includes('refused')")
        page.fill("#key", "page-key-1")
        page.click("#keyform button")
        page.wait_for_selector('tr[data-model="demo"]', timeout=10000)
        assert page.locator("#model option").count() == 3
        page.close()
    finally:
        gw.stop()


USER_HF = "hf_page_user_token_1"


@pytest.fixture
def spaces(fresh_faulty: FaultyGradio) -> Iterator[tuple[FaultyGradio, StandInHub]]:
    """Stand-in apps page-one and page-two, served as team/page-one and team/page-two by a stand-in Hub."""
    hub = StandInHub(valid_tokens={USER_HF})
    for name in ("page-one", "page-two"):
        if name not in fresh_faulty.apps:
            fresh_faulty.add(name)
        hub.spaces[f"team/{name}"] = Space(fresh_faulty.apps[name].url)
    try:
        yield fresh_faulty, hub
    finally:
        hub.stop()


def test_the_page_shows_a_cooling_pool_member_a_quotas_time_left_and_a_missing_space(spaces, browser, tmp_path):
    faulty, hub = spaces
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": {
        "pool": {"spaces": ["team/page-one", "team/page-two"]},
        "quota": {"space": faulty.apps["page-one"].url},
        "missing": {"space": "team/no-such-space"},
    }}))
    gw = Gunicorn({"MODELS_FILE": str(models), "BUILTIN_MODELS": "false", "HF_ENDPOINT": hub.url,
                   "UPSTREAM_CONNECT_TIMEOUT": "5", "UPSTREAM_IDLE_TIMEOUT": "10"}).wait_ready()
    try:
        # page-one is out of quota for ten minutes: the pool moves on to page-two, the direct model fails.
        faulty.apps["page-one"].inject(*[Fault("status", status=429, retry_after="600")] * 2)
        post = lambda body, **headers: requests.post(gw.url + "/v1/chat/completions", json=body,  # noqa: E731
                                                     headers=headers, timeout=30)
        assert post(chat(model="pool")).status_code == 200
        assert post(chat(model="quota")).status_code == 429
        missing = post(chat(model="missing"), **{"X-HF-Token": USER_HF})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "space_not_found"
        page = browser.new_page()
        page.goto(gw.url + "/")
        members = page.locator('tr[data-model="pool"] div.member[data-space]')
        assert [members.nth(i).get_attribute("data-state") for i in range(2)] == ["cooling down", "available"]
        assert re.search(r"cooling down, (9 min [0-9]+|10 min 0) s left \(quota\)", members.nth(0).inner_text())
        assert page.locator('tr[data-model="pool"]').get_attribute("data-state") == "ready"
        quota = page.locator('tr[data-model="quota"]')
        assert quota.get_attribute("data-state") == "quota"
        assert re.search(r"(9 min [0-9]+|10 min 0) s left", quota.inner_text())
        gone = page.locator('tr[data-model="missing"]')
        assert gone.get_attribute("data-state") == "not found"
        assert gone.locator("td").nth(4).inner_text() == "1"              # the Errors column
        assert "space_not_found" in gone.inner_text() and "does not exist" in gone.inner_text()
        # Check now without a token: the Hub cannot tell missing from private.
        page.click('button.probe[data-model="missing"]')
        page.wait_for_selector('tr[data-model="missing"][data-state="unauthorized"]', timeout=30000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-page-states.png"), full_page=True)
        page.close()
    finally:
        gw.stop()


def test_check_now_admits_the_key_for_the_model_as_the_api_would(make_faulty_app, fresh_faulty, tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"key": "sk-page-team", "name": "team", "models": ["steady"],
                                              "requests_per_minute": 2}]}))
    client = make_faulty_app(KEYS_FILE=str(keys)).test_client()
    auth = {"Authorization": "Bearer sk-page-team"}
    refused = client.post("/status/probe/plain", headers=auth)
    assert refused.status_code == 404 and refused.get_json()["error"]["code"] == "model_not_found"
    assert fresh_faulty.requests_to("plain") == []
    assert [client.post("/status/probe/steady", headers=auth).status_code for _ in range(2)] == [200, 200]
    seen = len(fresh_faulty.requests_to("steady"))
    limited = client.post("/status/probe/steady", headers=auth)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert int(limited.headers["Retry-After"]) >= 1
    assert len(fresh_faulty.requests_to("steady")) == seen          # nothing went upstream
    assert client.post("/status/probe/steady").status_code == 401


class Served:
    """A Flask app on a free port, werkzeug's threaded server in a thread (stopped by stop())."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


def test_the_page_works_under_an_init_app_prefix(page_apps, browser, tmp_path):
    from flask import Flask

    from gateway import Gateway
    from gateway.config import load_settings

    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": {"demo": {"space": page_apps["demo"]}}}))
    host = Flask("host")
    Gateway(host, url_prefix="/llm", settings=load_settings({
        "BUILTIN_MODELS": "false", "MODELS_FILE": str(models), "GATEWAY_API_KEYS": "prefix-key-1"}))
    served = Served(host)
    try:
        page = browser.new_page()
        page.goto(served.url + "/llm/")
        assert page.inner_text("#api") == "/llm/v1"
        page.fill("#key", "prefix-key-1")                  # GET /llm/?part=models
        page.click("#keyform button")
        page.wait_for_selector('tr[data-model="demo"]', timeout=10000)
        page.click('button.probe[data-model="demo"]')      # POST /llm/status/probe/demo
        page.wait_for_selector('tr[data-model="demo"][data-state="ready"]', timeout=30000)
        assert "6.31.0" in page.inner_text('tr[data-model="demo"]')
        page.fill("#prompt", "under a prefix")             # POST /llm/v1/chat/completions
        page.click("#try button[type=submit]")
        page.wait_for_function("document.getElementById('reply').textContent.includes('under a prefix')",
                               timeout=30000)
        page.close()
    finally:
        served.stop()
