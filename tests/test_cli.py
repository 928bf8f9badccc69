"""`flask --app wsgi models probe|check` against the real apps of tests/mapping_apps.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import mapping_apps
from tests.conftest import free_port
from tests.fixtures_mapping import mapping_env


def gateway(models_file: Path) -> Any:
    from gateway import create_app

    return create_app({"TESTING": True}, env=mapping_env(models_file))


def run(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["models", *args])


def entry_of(output: str) -> dict[str, Any]:
    return yaml.safe_load(output.split("Models file entry:\n", 1)[1])


@pytest.mark.parametrize("name", list(mapping_apps.APPS))
def test_probe_prints_an_entry_that_works_as_printed(make_mapping_app, mapping_apps_urls, tmp_path, name):
    result = run(make_mapping_app(), "probe", mapping_apps_urls[name], "--id", "probed")
    assert result.exit_code == 0, result.output
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(entry_of(result.output)))
    resp = gateway(path).test_client().post("/v1/chat/completions", json={
        "model": "probed", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.get_json()


def test_probe_shows_endpoint_streaming_history_and_parameter_mapping(make_mapping_app, mapping_apps_urls):
    output = run(make_mapping_app(), "probe", mapping_apps_urls["chat"]).output
    assert "Endpoint:   /chat (detected)" in output
    assert "Protocol:   Gradio 6.31.0, /call under /gradio_api" in output
    assert "Streams:    no (answers are pseudo-streamed)" in output
    assert "max_new_tokens (Slider, number 1..2048)" in output and "<- max_tokens" in output
    assert "system_message (Textbox, string)" in output and "<- system and developer messages" in output
    history = run(make_mapping_app(), "probe", mapping_apps_urls["pairs"]).output
    assert "History:    chat_history ([user, bot] pairs)" in history
    assert "Streams:    yes" in run(make_mapping_app(), "probe", mapping_apps_urls["respond"]).output


def test_probe_with_flags_reports_parameters_the_app_lacks(make_mapping_app, mapping_apps_urls):
    result = run(make_mapping_app(), "probe", mapping_apps_urls["chat"], "--flags", "11")
    assert result.exit_code == 1
    assert "Problem:    flags 11 name parameters /chat lacks: input_data, system_prompt" in result.output
    assert entry_of(result.output)["models"]["127.0.0.1-" + mapping_apps_urls["chat"].split(":")[-1]
                                             .strip("/")]["flags"] == "11"


def test_probe_of_an_unreachable_app_fails_with_the_reason(make_mapping_app):
    result = run(make_mapping_app(), "probe", f"http://127.0.0.1:{free_port()}/")
    assert result.exit_code == 1 and "Cannot map" in result.output and "unreachable" in result.output


def test_probe_refuses_a_malformed_space_or_flags(make_mapping_app):
    assert run(make_mapping_app(), "probe", "not a space").exit_code == 2
    assert run(make_mapping_app(), "probe", "owner/name", "--flags", "99").exit_code == 2


def test_check_passes_when_every_model_maps_cleanly(mapping_apps_urls, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "chat": {"space": mapping_apps_urls["chat"]},
        "legacy": {"space": mapping_apps_urls["policy"], "flags": "52", "api_name": "/generate"}}}))
    result = run(gateway(path), "check")
    assert result.exit_code == 0, result.output
    assert "ok    legacy: /generate, does not stream, Gradio 6.31.0, /call under /gradio_api " \
        "(message=prompt, system=policy, max_tokens=max_new_tokens)" \
        in result.output
    assert "2 of 2 models map cleanly." in result.output


def test_check_fails_and_names_each_model_that_does_not_map(mapping_apps_urls, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": {
        "good": {"space": mapping_apps_urls["respond"]},
        "wrong-flags": {"space": mapping_apps_urls["query"], "flags": "00"},
        "wrong-endpoint": {"space": mapping_apps_urls["query"], "api_name": "/chat"},
        "text-as-dict": {"space": mapping_apps_urls["respond"], "flags": "30"},
        "gone": {"space": f"http://127.0.0.1:{free_port()}/"}}}))
    result = run(gateway(path), "check")
    assert result.exit_code == 1
    assert "ok    good: /respond, streams, Gradio 6.31.0, /call under /gradio_api (message=message)" in result.output
    assert "FAIL  wrong-flags: flags 00 name parameters /search lacks: message, system_message" in result.output
    assert "FAIL  wrong-endpoint: The Gradio app has no endpoint /chat" in result.output
    assert "FAIL  text-as-dict: flags 30 send {text, files} but message is a Textbox" in result.output
    assert "FAIL  gone: " in result.output
    assert "1 of 5 models map cleanly." in result.output


def test_probe_resolves_a_space_id_through_the_hub(make_mapping_app, mapping_apps_urls, hub):
    from tests.standins.hub import Space

    hub.spaces["acme/Chat-Demo"] = Space(host=mapping_apps_urls["chat"])
    result = run(make_mapping_app(HF_ENDPOINT=hub.url), "probe", "acme/Chat-Demo")
    assert result.exit_code == 0, result.output
    assert entry_of(result.output) == {"models": {"chat-demo": {"space": "acme/Chat-Demo", "api_name": "/chat"}}}
