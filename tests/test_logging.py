"""The access line: one per API request, text or JSON, never a token or a message body."""
from __future__ import annotations

import json
from typing import Any

SECRET_TOKEN = "hf_doNotLogThisTokenEver0123456789"
SECRET_TEXT = "my bank password is hunter2"


def _post(client: Any, rid: str, model: str = "echo-app", stream: bool = False, **kwargs: Any) -> Any:
    body = {"model": model, "stream": stream, "messages": [{"role": "system", "content": SECRET_TEXT},
                                                          {"role": "user", "content": SECRET_TEXT}]}
    return client.post("/v1/chat/completions", json=body, headers={
        "X-Request-Id": rid, "Authorization": f"Bearer {SECRET_TOKEN}", "X-HF-Token": SECRET_TOKEN}, **kwargs)


def _access_text_lines(err: str, rid: str) -> list[str]:
    return [line for line in err.splitlines() if "gateway.access" in line and f"request_id={rid} " in line]


def _access_json_lines(err: str, rid: str) -> list[dict[str, Any]]:
    found = []
    for line in err.splitlines():
        if line.startswith("{") and f'"{rid}"' in line:
            record = json.loads(line)
            if record["logger"] == "gateway.access":
                found.append(record)
    return found


def test_access_line_as_text_names_request_model_status_and_timings(make_app, capsys, apps):
    client = make_app().test_client()
    resp = _post(client, "log-text-1", stream=True)
    assert resp.status_code == 200 and resp.get_data(as_text=True).endswith("data: [DONE]\n\n")
    resp.close()
    err = capsys.readouterr().err
    [line] = _access_text_lines(err, "log-text-1")
    host = apps["echo"].split("//")[1].rstrip("/")
    for part in ("method=POST", "path=/v1/chat/completions", "model=echo-app", "status=200", "stream=true",
                 f"upstream={host}", "error=-"):
        assert f" {part} " in f" {line} ", part
    assert " duration_ms=" in line and " ttft_ms=-" not in line
    assert SECRET_TOKEN not in err and "hunter2" not in err


def test_access_line_as_json_has_the_same_fields(make_app, capsys, apps):
    client = make_app(LOG_FORMAT="json").test_client()
    resp = _post(client, "log-json-1")
    assert resp.status_code == 200
    resp.close()
    err = capsys.readouterr().err
    [record] = _access_json_lines(err, "log-json-1")
    assert record["level"] == "INFO" and isinstance(record["pid"], int) and record["time"].endswith("Z")
    assert {k: record[k] for k in ("method", "path", "model", "status", "stream", "upstream", "error")} == {
        "method": "POST", "path": "/v1/chat/completions", "model": "echo-app", "status": 200, "stream": False,
        "upstream": apps["echo"].split("//")[1].rstrip("/"), "error": None}
    assert 0 < record["ttft_ms"] <= record["duration_ms"]
    assert SECRET_TOKEN not in err and "hunter2" not in err


def test_stream_is_logged_once_when_it_ends(make_app, capsys):
    client = make_app(LOG_FORMAT="json").test_client()
    resp = _post(client, "log-stream-1", stream=True, buffered=False)
    body = iter(resp.response)
    assert next(body).startswith(b"data: ")                   # the stream is open
    assert _access_json_lines(capsys.readouterr().err, "log-stream-1") == []
    assert b"".join(body).endswith(b"data: [DONE]\n\n")
    resp.close()
    [record] = _access_json_lines(capsys.readouterr().err, "log-stream-1")
    assert record["stream"] is True and record["status"] == 200


def test_failures_are_logged_with_their_error_code(make_app, capsys):
    client = make_app(LOG_FORMAT="json").test_client()
    _post(client, "log-fail-1", model="failing-app").close()
    _post(client, "log-fail-2", model="no-such-model").close()
    resp = client.post("/v1/chat/completions", data="not json", headers={"X-Request-Id": "log-fail-3"})
    resp.close()
    err = capsys.readouterr().err
    [failed] = _access_json_lines(err, "log-fail-1")
    [unknown] = _access_json_lines(err, "log-fail-2")
    [bad] = _access_json_lines(err, "log-fail-3")
    assert (failed["status"], failed["error"], failed["model"]) == (502, "upstream_error", "failing-app")
    assert (unknown["status"], unknown["error"], unknown["model"]) == (404, "model_not_found", "no-such-model")
    assert (bad["status"], bad["error"]) == (400, "invalid_content_type")
    assert "hunter2" not in err and SECRET_TOKEN not in err


def test_probes_write_no_access_line(make_app, capsys):
    client = make_app().test_client()
    client.get("/healthz", headers={"X-Request-Id": "log-probe-1"}).close()
    assert "log-probe-1" not in capsys.readouterr().err


def test_request_for_an_unknown_path_gets_its_access_line(make_app, capsys):
    client = make_app().test_client()
    resp = client.post("/v1/no-such-endpoint", headers={"X-Request-Id": "log-404-1"})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    resp.close()
    [line] = _access_text_lines(capsys.readouterr().err, "log-404-1")
    assert " status=404 " in line and " error=not_found" in line
