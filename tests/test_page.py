"""The status page (GET /), in a real browser: headless Chromium (Debian's package) driven by Playwright.

A live gunicorn serves a real Gradio echo app as `demo`, an app that is stopped as `stopped`, and a
model whose id and Space carry markup. The page must show the demo as ready after a request,
stream a reply in the try-it box, show the stopped app as unreachable after "Check now", escape
what the models file said, and show nothing private without a key when keys are on. A screenshot
of each run is kept in test-artifacts/ (and the README's picture comes from one).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from tests import gradio_apps
from tests.conftest import ROOT, Gunicorn, free_port

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


def test_the_page_lives_under_an_init_app_prefix(page_apps):
    from flask import Flask

    from gateway import Gateway
    from gateway.config import load_settings

    host = Flask("host")
    Gateway(host, url_prefix="/llm", settings=load_settings({"BUILTIN_MODELS": "false"}))
    resp = host.test_client().get("/llm/")
    assert resp.status_code == 200 and "/llm/v1" in resp.get_data(as_text=True)
