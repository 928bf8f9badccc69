"""GET / — a status page for people: which models work and why the others do not, and a box to try one.

Server-rendered (Jinja's autoescaping covers everything an app or a models file said), one small
script, no external assets. With GATEWAY_API_KEYS set the page itself shows nothing private: the
table comes from `GET /?part=models` with the key in the Authorization header, as the API's.
"""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, render_template_string, request
from markupsafe import Markup
from flask.typing import ResponseReturnValue

from .. import admission, credentials, status
from ..errors import GatewayError, error_response
from ..http import gateway_state, request_id
from ..upstream.apps import PROTOCOL_TEXT
from ..upstream.mapping import plan_roles

bp = Blueprint("page", __name__)


def _apps_by_model(state: Any) -> dict[str, dict[str, Any]]:
    """What this worker has read of each model's app (never calls an app to find out)."""
    known = state.upstream.known_apps()
    out: dict[str, dict[str, Any]] = {}
    for model in state.registry:
        app = known.get(model.space)
        if app is None:
            continue
        endpoint_text, roles = "", {}
        try:
            from ..upstream.detect import choose_endpoint   # noqa: PLC0415
            endpoint = choose_endpoint(app, model.api_name)
            endpoint_text = endpoint.key + (f" then {endpoint.follower.key}" if endpoint.follower else "")
            roles = {role: str(endpoint.parameters[i].get("parameter_name") or endpoint.parameters[i].get("label"))
                     for role, i in plan_roles(endpoint, model.flags).items()}
        except (GatewayError, LookupError, TypeError, ValueError):
            endpoint_text = "not mappable: set api_name"
        out[model.id] = {"version": app.version, "protocol": PROTOCOL_TEXT.get(app.protocol, app.protocol),
                         "endpoint": endpoint_text, "roles": roles}
    return out


def _rows() -> list[status.ModelStatus]:
    state = gateway_state()
    return status.board(state.registry, _apps_by_model(state))


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
        refused = _refused()
        return refused or render_template_string(TABLE, rows=_rows(), now=time.time())
    show = not keyed
    rows = _rows() if show else []
    table = Markup(render_template_string(TABLE, rows=rows, now=time.time())) if show else ""
    html = render_template_string(PAGE, keyed=keyed, rows=rows, show=show, table=table,
                                  meanings=status.MEANING,
                                  base=request.script_root + (gateway_state().url_prefix or ""))
    return Response(html, mimetype="text/html", headers={"Cache-Control": "no-store"})


@bp.post("/status/probe/<path:model_id>")
def probe(model_id: str) -> ResponseReturnValue:
    """Read a model's app again now (the refresh button): its metadata, through the cache's rebuild."""
    refused = _refused()
    if refused is not None:
        return refused
    state = gateway_state()
    model = state.registry.get(model_id)
    credential = credentials.resolve(request.headers, state.settings, admission.hf_token(admission.current_key()))
    try:
        state.upstream.reload(model, credential)
        status.note(model.id, None)
    except GatewayError as exc:
        status.note(model.id, exc)
    return render_template_string(TABLE, rows=_rows(), now=time.time())


TABLE = """\
<table id="models">
<caption>Models ({{ rows|length }})</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Space</th><th scope="col">Gradio</th>
<th scope="col">Mapping</th><th scope="col">State</th><th scope="col">Requests</th><th scope="col">Errors</th>
<th scope="col">Mean latency</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
<tbody>
{% for r in rows %}
<tr data-model="{{ r.id }}" data-state="{{ r.state }}">
<th scope="row"><code>{{ r.id }}</code></th>
<td>{% for s in r.spaces %}<code>{{ s }}</code>{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td>{% if r.version %}{{ r.version }}<br><small>{{ r.protocol }}</small>{% else %}<small>not read yet</small>{% endif %}</td>
<td>{% if r.endpoint %}<code>{{ r.endpoint }}</code>{% for role, name in r.roles.items() %}<br><small>{{ role }} → {{ name }}</small>{% endfor %}{% else %}<small>not read yet</small>{% endif %}</td>
<td><span class="state state-{{ r.state|replace(' ', '-') }}" title="{{ r.meaning }}">{{ r.state }}</span>
{% if r.retry_in %}<br><small>for {{ (r.retry_in // 60) }} min {{ r.retry_in % 60 }} s</small>{% endif %}
{% if r.since %}<br><small>seen {{ ((now - r.since)|int) }} s ago</small>{% endif %}</td>
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
.state-ready{background:#d7f5dd}.state-quota,.state-cooling-down,.state-building,.state-sleeping{background:#fff1c2}
.state-unreachable,.state-failing,.state-timing-out,.state-paused,.state-error-stage{background:#ffd9d6}
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
  var key = "";
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
    b.disabled = true; b.textContent = "Checking…";
    fetch(base + "/status/probe/" + encodeURIComponent(b.dataset.model), {method: "POST", headers: headers()})
      .then(function (r) { return r.text(); }).then(showTable);
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
