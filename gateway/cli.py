"""`flask --app wsgi models probe|check`: how the gateway maps a Gradio app, before users hit it.

Both commands go through the gateway's own upstream code (Upstream.app_for, build_plan),
so what they print is what a request would do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import click
import yaml
from flask.cli import AppGroup

from .credentials import Credential, resolve
from .errors import GatewayError, UpstreamError, UpstreamUnavailable
from .http import gateway_state
from .registry import Model
from .schemas import FLAGS, SPACE_ID, SPACE_URL, ChatRequest, Message, space_page_hint
from .upstream.detect import FLAG_INPUTS, describe, history_format, missing_flag_names, takes_files
from .upstream.diagnose import NotAGradioApp, gradio_config
from .upstream.mapping import Plan, build_plan
from .upstream.pools import member_models, pool_lines
from .upstream.protocol import Gradio

models_cli = AppGroup("models", help="Inspect how the gateway maps models onto their Gradio apps.")

ROLE_TEXT = {
    "system": "system and developer messages",
    "history": "earlier turns",
    "max_tokens": "max_tokens / max_completion_tokens",
}
# A request that fills every role, so the plan shows each mapping.
SAMPLE = ChatRequest(model="probe", messages=[Message("system", "You are helpful."), Message("user", "Hi"),
                                              Message("assistant", "Hello!"), Message("user", "How are you?")],
                     max_tokens=256, temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=1,
                     reasoning_effort="low")


@dataclass
class Probe:
    """What the gateway would do with a model: its plan, or why it cannot map the app."""

    model: Model
    plan: Plan | None = None
    version: str = ""
    speaks: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.problems


def _refuse_upload(url: str) -> dict[str, Any]:
    raise click.ClickException("a probe never uploads images")


def probe_model(model: Model, credential: Credential) -> Probe:
    """Read the app's API through the gateway's cache and plan the sample request onto it."""
    upstream = gateway_state().upstream
    try:
        app = upstream.app_for(model, credential)
        plan = build_plan(app, model.api_name, model.flags, SAMPLE, upload=_refuse_upload)
    except GatewayError as exc:
        return Probe(model, problems=[_diagnosed(model, credential, exc)])
    probe = Probe(model, plan, app.version, app.speaks)
    if model.flags:
        probe.problems += flag_problems(plan, model.flags)
    return probe


def _diagnosed(model: Model, credential: Credential, exc: GatewayError) -> str:
    """When a URL's app could not be read, tell a web page or another service from a failing app."""
    if not model.is_url or not isinstance(exc, UpstreamError) or isinstance(exc, UpstreamUnavailable):
        return exc.message
    settings = gateway_state().settings
    gradio = Gradio(gateway_state().upstream.session, model.space, credential.app_headers(),
                    connect_timeout=settings.connect_timeout, read_timeout=settings.idle_timeout)
    try:
        gradio_config(gradio)
    except NotAGradioApp as diagnosis:
        return diagnosis.message
    except GatewayError:
        pass
    return exc.message


def flag_problems(plan: Plan, flags: str) -> list[str]:
    """Where the seed's flags promise what the endpoint does not have."""
    problems = []
    missing = missing_flag_names(plan.endpoint.parameters, flags)
    if missing:
        problems.append(f"flags {flags} name parameters {plan.endpoint.api_name} lacks: {', '.join(missing)}")
    message = _param(plan, "message")
    as_dict = FLAG_INPUTS[flags[0]][2]
    if message is not None and as_dict != takes_files(message):
        sent = "{text, files}" if as_dict else "a string"
        problems.append(f"flags {flags} send {sent} but {message.get('parameter_name')} is a "
                        f"{message.get('component')}")
    return problems


def operator_credential() -> Credential:
    """Exactly what a request without a token of its own would use (CONTRACT §5).

    Behind GATEWAY_API_KEYS that is the operator's HF_TOKEN; an open gateway never spends it,
    so neither does this command: a private Space that works here works for callers too.
    """
    return resolve({}, gateway_state().settings)


def credential_line(credential: Credential) -> str:
    """Which credential the command used, and why: never the token itself."""
    settings = gateway_state().settings
    if credential.source == "operator":
        keyed = [name for name, on in (("GATEWAY_API_KEYS", settings.api_keys), ("KEYS_FILE", settings.keys_file))
                 if on]
        return (f"Credential: the operator's HF_TOKEN ({' and '.join(keyed)} {'are' if len(keyed) > 1 else 'is'} "
                "set, so keyed callers spend it)")
    if settings.hf_token and not settings.api_keys:
        return ("Credential: anonymous; HF_TOKEN is set but not used: an open gateway (no "
                "GATEWAY_API_KEYS) never spends it, so requests without their own hf_ token are anonymous too")
    return "Credential: anonymous (what a request without its own hf_ token gets)"


def default_model_id(space: str) -> str:
    """'owner/Name' -> 'name'; 'http://host:7860/x/' -> 'host-7860-x'."""
    if SPACE_ID.match(space):
        base = space.split("/", 1)[1]
    else:
        base = re.sub(r"^https?://", "", space)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower() or "model"


def models_entry(probe: Probe, model_id: str) -> str:
    """A ready models-file entry; the endpoint pinned so a redeploy cannot re-route it."""
    entry: dict[str, Any] = {"space": probe.model.space}
    if probe.plan is not None and probe.plan.endpoint.api_name:
        entry["api_name"] = probe.plan.endpoint.api_name
    if probe.model.flags:
        entry["flags"] = probe.model.flags
    return yaml.safe_dump({"models": {model_id: entry}}, sort_keys=False).rstrip()


def _message_source(plan: Plan) -> str:
    text = "the last user message" if "history" in plan.roles else \
        "the user message (with earlier turns: a readable transcript)"
    return text if "system" in plan.roles else text + ", after the system text"


def _parameter_lines(plan: Plan) -> list[str]:
    by_name = {name: role for role, name in plan.roles.items()}
    lines = []
    for i, param in enumerate(plan.endpoint.parameters):
        role = by_name.get(str(param.get("parameter_name") or param.get("label") or i))
        if role:
            source = _message_source(plan) if role == "message" else ROLE_TEXT.get(role, role)
            lines.append(f"  {describe(param):<50} <- {source}")
        else:
            lines.append(f"  {describe(param):<50} = app default {param.get('parameter_default')!r}")
    return lines


def _param(plan: Plan, role: str) -> dict[str, Any] | None:
    name = plan.roles.get(role)
    return next((p for i, p in enumerate(plan.endpoint.parameters)
                 if str(p.get("parameter_name") or p.get("label") or i) == name), None)


def _history_line(plan: Plan) -> str:
    param = _param(plan, "history")
    if param is None:
        return "none: earlier turns go into the message as a readable transcript"
    fmt = {"messages": "Gradio messages, content as text parts", "messages-text": "messages, content as text",
           "pairs": "[user, bot] pairs"}[history_format(param)]
    return f"{plan.roles['history']} ({fmt})"


def report(probe: Probe, model_id: str) -> str:
    """The probe as the operator reads it."""
    if probe.plan is None:
        return f"Cannot map {probe.model.space}: {'; '.join(probe.problems)}"
    plan = probe.plan
    message = _param(plan, "message")
    images = (bool(probe.model.flags and probe.model.flags[0] in "23")
              or (not probe.model.flags and message is not None and takes_files(message)))
    how = f"flags {probe.model.flags}" if probe.model.flags else "detected"
    lines = [f"App:        {probe.model.space} (Gradio {probe.version or 'unknown'})",
             f"Protocol:   {probe.speaks}",
             f"Endpoint:   {plan.endpoint.key} ({'api_name' if probe.model.api_name else how})",
             *([f"Chain:      {plan.endpoint.key} then {plan.answer.key}, whose output is the answer "
                "(a two-step chat)"] if plan.endpoint.follower else []),
             f"Streams:    {'yes' if plan.answer.generator else 'no (answers are pseudo-streamed)'}",
             f"Images:     {'yes, uploaded as files' if images else 'no: image_url parts get 400'}",
             f"History:    {_history_line(plan)}",
             f"Parameters ({how}):", *_parameter_lines(plan)]
    lines += [f"Problem:    {p}" for p in probe.problems]
    lines += ["", "Models file entry:", models_entry(probe, model_id)]
    return "\n".join(lines)


@models_cli.command("probe")
@click.argument("space")
@click.option("--api-name", help="Use this endpoint instead of detecting one, e.g. /chat.")
@click.option("--flags", help="The seed gateway's two-digit flags, e.g. 41.")
@click.option("--id", "model_id", help="The model id for the printed entry.")
def probe_command(space: str, api_name: str | None, flags: str | None, model_id: str | None) -> None:
    """Show how SPACE (an HF Space id or a Gradio URL) maps, and a models-file entry for it."""
    hint = space_page_hint(space)
    if hint:
        raise click.BadParameter(hint, param_hint="SPACE")
    if not (SPACE_ID.match(space) or SPACE_URL.match(space)):
        raise click.BadParameter("must be a Space id 'owner/name' or an http(s):// URL", param_hint="SPACE")
    if flags is not None and not FLAGS.match(flags):
        raise click.BadParameter("must be two digits: the first 0-5, the second 0-2", param_hint="--flags")
    if api_name and not api_name.startswith("/"):
        api_name = "/" + api_name
    model_id = model_id or default_model_id(space)
    credential = operator_credential()
    click.echo(credential_line(credential))
    probe = probe_model(Model(id=model_id, space=space, api_name=api_name, flags=flags), credential)
    click.echo(report(probe, model_id))
    if not probe.ok:
        click.get_current_context().exit(1)


@models_cli.command("check")
def check_command() -> None:
    """Probe every configured model (each Space of a pool); exit 1 if any does not map cleanly."""
    registry = gateway_state().registry
    pools = gateway_state().upstream.pools
    credential = operator_credential()
    click.echo(credential_line(credential))
    if any(model.spaces for model in registry) and not pools.shared.remote:
        click.echo("Cooldowns: without REDIS_URL each worker keeps its own, out of this command's sight")
    failed = 0
    for model in registry:
        probes = [probe_model(member, credential) for member in member_models(model)]
        problems = {p.model.space: p.problems for p in probes if not p.ok}
        probe = next((p for p in probes if p.ok), probes[0])
        if model.spaces and problems:
            failed += 1
            click.echo(f"FAIL  {model.id}: {len(problems)} of {len(probes)} Spaces do not map")
        elif probe.ok and probe.plan is not None:
            mapped = ", ".join(f"{role}={name}" for role, name in probe.plan.roles.items())
            plan = probe.plan
            streams = "streams" if plan.answer.generator else "does not stream"
            chain = f" then {plan.answer.key}" if plan.endpoint.follower else ""
            click.echo(f"ok    {model.id}: {plan.endpoint.key}{chain}, {streams}, {probe.speaks} ({mapped})")
        else:
            failed += 1
            click.echo(f"FAIL  {model.id}: {'; '.join(probe.problems)}")
        for line in pool_lines(pools, model, problems):
            click.echo(line)
    click.echo(f"{len(registry) - failed} of {len(registry)} models map cleanly.")
    if failed:
        click.get_current_context().exit(1)
