"""GET / — a status page for people: which models work and why the others do not, and a box to try one.

Server-rendered (Jinja's autoescaping covers everything an app or a models file said), one small
script, no external assets. With GATEWAY_API_KEYS set the page itself shows nothing private: the
table comes from `GET /?part=models` with the key in the Authorization header, as the API's.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, render_template_string, request
from markupsafe import Markup
from flask.typing import ResponseReturnValue

from .. import admission, credentials, status
from ..credentials import Credential
from ..errors import GatewayError, error_response
from ..http import gateway_state, request_id
from ..registry import Model
from ..upstream.apps import PROTOCOL_TEXT
from ..upstream.detect import choose_endpoint
from ..upstream.mapping import plan_roles

bp = Blueprint("page", __name__)


def _mapping(app: Any, model: Any) -> dict[str, Any]:
    """How the gateway reads this app for the model: its Gradio, endpoint and roles."""
    endpoint_text, roles = "", {}
    try:
        endpoint = choose_endpoint(app, model.api_name)
        endpoint_text = endpoint.key + (f" then {endpoint.follower.key}" if endpoint.follower else "")
        roles = {role: str(endpoint.parameters[i].get("parameter_name") or endpoint.parameters[i].get("label"))
                 for role, i in plan_roles(endpoint, model.flags).items()}
    except (GatewayError, LookupError, TypeError, ValueError):
        endpoint_text = "not mappable: set api_name"
    return {"version": app.version, "protocol": PROTOCOL_TEXT.get(app.protocol, app.protocol),
            "endpoint": endpoint_text, "roles": roles}


def _apps_by_model(state: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """What this worker has read of each model's apps, by model and member Space (no app is called)."""
    known = state.upstream.known_apps()
    return {model.id: {space: _mapping(known[space], model) for space in model.members if space in known}
            for model in state.registry}


def _rows() -> list[status.ModelStatus]:
    state = gateway_state()
    cooling = status.cooldowns(state.shared, state.registry, state.upstream.pools.default.fingerprint)
    return status.board(state.registry, _apps_by_model(state), cooling)


def _table() -> str:
    return render_template_string(TABLE, rows=_rows(), now=time.time())


def _refused() -> Response | None:
    """The API's own 401 (OpenAI's error shape) when keys are on and none valid came."""
    try:
        state = gateway_state()
        admission.authenticate(request.headers, state.settings, state.keys)     # KEYS_FILE's keys too
    except GatewayError as exc:
        return error_response(exc, request_id())
    return None


@bp.get("/")
def page() -> ResponseReturnValue:
    """The page; `?part=models` is the table alone (what the script fetches with a key)."""
    settings = gateway_state().settings
    keyed = bool(settings.api_keys or settings.keys_file)
    if request.args.get("part") == "models":
        return _refused() or _table()
    show = not keyed
    rows = _rows() if show else []
    table = Markup(render_template_string(TABLE, rows=rows, now=time.time())) if show else ""
    html = render_template_string(PAGE, keyed=keyed, rows=rows, show=show, table=table,
                                  meanings=status.MEANING,
                                  base=request.script_root + (gateway_state().url_prefix or ""))
    return Response(html, mimetype="text/html", headers={"Cache-Control": "no-store"})


@bp.post("/status/probe/<path:model_id>")
def probe(model_id: str) -> ResponseReturnValue:
    """Read a model's apps again now (Check now), admitted like a request of the key.

    It contacts the model's apps: the key's allow-list and request limit hold (404/429 as the API
    answers them)."""
    state = gateway_state()
    try:
        admission.authenticate(request.headers, state.settings, state.keys)
        model = state.registry.get(model_id)
        ticket = admission.admit(state, model.id)
    except GatewayError as exc:
        return error_response(exc, request_id())
    try:
        credential = credentials.resolve(request.headers, state.settings, ticket.hf_token)
        status.note(model.id, _read_again(state, model, credential))
    except GatewayError as exc:
        return error_response(exc, request_id())
    finally:
        ticket.release()
    return _table()


def _read_again(state: Any, model: Model, credential: Credential) -> GatewayError | None:
    """Drop and rebuild each member's metadata: None when one answered, else the last error."""
    answered, failed = False, None
    for space in model.members:
        try:
            state.upstream.reload(replace(model, space=space, spaces=()), credential)
            answered = True
        except GatewayError as exc:
            failed = exc.redact(credential.token, credential.ip_token)
    return None if answered else failed


TABLE = """\
{% macro left(seconds) %}{% if seconds >= 60 %}{{ seconds // 60 }} min {{ seconds % 60 }} s{% else %}{{ seconds }} s{% endif %} left{% endmacro %}
<table id="models">
<caption>Models ({{ rows|length }})</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Space</th><th scope="col">Gradio</th>
<th scope="col">Mapping</th><th scope="col">State</th><th scope="col">Requests</th><th scope="col">Errors</th>
<th scope="col">Mean latency</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
<tbody>
{% for r in rows %}
<tr data-model="{{ r.id }}" data-state="{{ r.state }}">
<th scope="row"><code>{{ r.id }}</code></th>
<td>{% for m in r.members %}<div class="member" data-space="{{ m.space }}" data-state="{{ m.state }}"><code>{{ m.space }}</code>
{%- if m.state %}<br><span class="state state-{{ m.state|replace(' ', '-') }}">{{ m.state }}</span>
{%- if m.retry_in %}<small>, {{ left(m.retry_in) }} ({{ m.reason }})</small>{% endif %}{% endif %}</div>{% endfor %}</td>
<td>{% for m in r.members %}<div class="member">{% if m.version %}{{ m.version }}<br><small>{{ m.protocol }}</small>{% else %}<small>not read yet</small>{% endif %}</div>{% endfor %}</td>
<td>{% for m in r.members %}<div class="member">{% if m.endpoint %}<code>{{ m.endpoint }}</code>{% for role, name in m.roles.items() %}<br><small>{{ role }} → {{ name }}</small>{% endfor %}{% else %}<small>not read yet</small>{% endif %}</div>{% endfor %}</td>
<td><span class="state state-{{ r.state|replace(' ', '-') }}" title="{{ r.meaning }}">{{ r.state }}</span>
{% if r.retry_in %}<br><small class="left">{{ left(r.retry_in) }}</small>{% endif %}
{% if r.since %}<br><small>seen {{ ((now - r.since)|int) }} s ago</small>{% endif %}
{% if r.last_error %}<br><small class="last-error">last error, {{ ((now - r.last_error[0])|int) }} s ago: <code>{{ r.last_error[1] }}</code> {{ r.last_error[2] }}</small>{% endif %}</td>
<td>{{ r.requests }}</td><td>{{ r.errors }}</td>
<td>{% if r.latency_ms is not none %}{{ r.latency_ms }} ms{% else %}–{% endif %}</td>
<td><button type="button" class="probe" data-model="{{ r.id }}" aria-label="Check {{ r.id }} now">Check now</button></td>
</tr>
{% endfor %}
</tbody></table>
"""

PAGE = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gradio-chat-gateway</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#1d1d1f}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top}
caption{text-align:left;font-weight:600;padding:.3rem 0}.sr{position:absolute;left:-9999px}
.state{font-weight:600;padding:.05rem .4rem;border-radius:.3rem;background:#eee}
.state-ready,.state-available{background:#d7f5dd}.state-quota,.state-cooling-down,.state-building,.state-sleeping{background:#fff1c2}
.state-unreachable,.state-failing,.state-timing-out,.state-paused,.state-error-stage,.state-unauthorized,.state-not-found{background:#ffd9d6}
.member+.member{margin-top:.4rem}.last-error{color:#8a1c12}
fieldset{border:1px solid #ddd;margin:1rem 0}label{display:block;margin:.3rem 0}
textarea,select,input{font:inherit;width:100%;box-sizing:border-box}#reply{white-space:pre-wrap;border:1px solid #ddd;min-height:4rem;padding:.5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
</style></head>
<body>
<header><h1>gradio-chat-gateway</h1>
<p>An OpenAI-compatible API in front of Gradio apps: point a client at <code id="api">{{ base }}/v1</code>.</p></header>
<main>
{% if keyed %}
<form id="keyform"><label for="key">Gateway key (sent as <code>Authorization: Bearer</code>, kept in this tab only)</label>
<input id="key" type="password" autocomplete="off"><button type="submit">Show models</button></form>
{% endif %}
<p id="notice" role="status"></p>
<section id="table" aria-live="polite">{% if show %}{{ table }}{% else %}<p>Enter a gateway key to see the models.</p>{% endif %}</section>
<section aria-labelledby="try-h"><h2 id="try-h">Try a model</h2>
<form id="try"><label for="model">Model</label><select id="model" required>
{% for r in rows %}<option value="{{ r.id }}">{{ r.id }}</option>{% endfor %}</select>
<label for="prompt">Message</label><textarea id="prompt" rows="3" required>Hello!</textarea>
<button type="submit">Send</button> <button type="button" id="stop">Stop</button></form>
<h3>Reply</h3><div id="reply" role="status" aria-live="polite"></div></section>
<section aria-labelledby="states-h"><h2 id="states-h">What the states mean</h2><dl>
{% for state, meaning in meanings.items() %}<dt>{{ state }}</dt><dd>{{ meaning }}</dd>{% endfor %}</dl>
<p><small>States come from what the gateway saw of recent requests; the page itself never calls an app.
"Check now" reads the model's app again.</small></p></section>
</main>
<script>
(function () {
  "use strict";
  var base = document.getElementById("api").textContent.replace(/\\/v1$/, "");
  var key = "", notice = document.getElementById("notice");
  function headers(extra) { var h = extra || {}; if (key) { h.Authorization = "Bearer " + key; } return h; }
  function fillModels() {
    var select = document.getElementById("model"); select.textContent = "";
    document.querySelectorAll("#models tbody tr").forEach(function (tr) {
      var o = document.createElement("option"); o.value = o.textContent = tr.dataset.model; select.appendChild(o);
    });
  }
  function showTable(html) { document.getElementById("table").innerHTML = html; fillModels(); }
  var keyform = document.getElementById("keyform");
  if (keyform) {
    keyform.addEventListener("submit", function (e) {
      e.preventDefault(); key = document.getElementById("key").value.trim();
      fetch(base + "/?part=models", {headers: headers()}).then(function (r) {
        return r.ok ? r.text().then(showTable) : Promise.reject(new Error("That key was refused."));
      }).catch(function (err) { document.getElementById("table").textContent = err.message; });
    });
  }
  document.getElementById("table").addEventListener("click", function (e) {
    var b = e.target.closest("button.probe"); if (!b) { return; }
    b.disabled = true; b.textContent = "Checking…"; notice.textContent = "";
    fetch(base + "/status/probe/" + encodeURIComponent(b.dataset.model), {method: "POST", headers: headers()})
      .then(function (r) {
        if (r.ok) { return r.text().then(showTable); }
        return r.json().then(function (j) { notice.textContent = "Check now: " + j.error.message; });
      })
      .catch(function (err) { notice.textContent = "Check now: " + err.message; })
      .then(function () { b.disabled = false; b.textContent = "Check now"; });
  });
  var controller = null;
  document.getElementById("stop").addEventListener("click", function () { if (controller) { controller.abort(); } });
  document.getElementById("try").addEventListener("submit", function (e) {
    e.preventDefault();
    var reply = document.getElementById("reply"); reply.textContent = "";
    controller = new AbortController();
    var body = {model: document.getElementById("model").value, stream: true,
                messages: [{role: "user", content: document.getElementById("prompt").value}]};
    fetch(base + "/v1/chat/completions", {method: "POST", signal: controller.signal,
      headers: headers({"Content-Type": "application/json"}), body: JSON.stringify(body)})
    .then(function (r) {
      if (!r.ok) { return r.json().then(function (j) { reply.textContent = "Error " + r.status + ": " + j.error.message; }); }
      var reader = r.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) { return; }
          buffer += decoder.decode(step.value, {stream: true});
          var events = buffer.split("\\n\\n"); buffer = events.pop();
          events.forEach(function (ev) {
            if (ev.indexOf("data: ") !== 0 || ev === "data: [DONE]") { return; }
            var chunk = JSON.parse(ev.slice(6));
            if (chunk.error) { reply.textContent += "\\n[error: " + chunk.error.message + "]"; return; }
            var delta = (chunk.choices[0] || {}).delta || {};
            if (delta.content) { reply.textContent += delta.content; }
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (err) { if (err.name !== "AbortError") { reply.textContent += "\\n[" + err.message + "]"; } });
  });
})();
</script>
</body></html>
"""
