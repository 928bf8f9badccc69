"""The operator's first hour (issue 13): the command, one line per bad setting from the server and the
commands alike, the banner and its warnings, and SIGHUP reloads under load without a dropped stream."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import ROOT, Gunicorn, free_port
from tests.fixtures_upstream import write_models
from tests.standins.fake_gradio import FakeGradio, Script

COMMAND = Path(sys.executable).parent / "gradio-chat-gateway"   # installed by `pip install -e .` (make)
SERVER = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
BAD_SETTINGS = [
    ("WORKER_CONNECTIONS", "10k", "WORKER_CONNECTIONS: must be a whole number, got '10k'"),
    ("GRACEFUL_TIMEOUT", "30s", "GRACEFUL_TIMEOUT: must be a whole number of seconds, got '30s'"),
    ("PORT", "80800", "PORT: must be a finite number greater than 0 and at most 65535, got '80800'"),
    ("LISTEN", "0.0.0.0:80", "LISTEN: must be an address or host name without a port"),
    ("BUILTIN_MODELS", "nope", "BUILTIN_MODELS: must be one of true/false/1/0/yes/no, got 'nope'"),
    ("USE_PROXY", "on", "USE_PROXY: must be one of true/false/1/0/yes/no, got 'on'"),
    ("UPSTREAM_IDLE_TIMEOUT", "soon", "UPSTREAM_IDLE_TIMEOUT: must be a number of seconds, got 'soon'"),
    ("STREAM_STATUS", "loud", "STREAM_STATUS: must be off or reasoning, got 'loud'"),
    ("HUB_TIMEOUT", "x", "HUB_TIMEOUT: must be a number of seconds, got 'x'"),
]


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: the installed command is an editable install of one clone; this one's package goes first.
    full = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LISTEN": "127.0.0.1", "PORT": str(free_port()),
            "WEB_CONCURRENCY": "1", "BUILTIN_MODELS": "true", **env}
    return subprocess.run(argv, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


def one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if "configuration error" in line]
    assert line.startswith("gradio-chat-gateway: configuration error: ") and expected in line, line


def test_the_command_is_installed_with_help_on_each_subcommand():
    assert COMMAND.exists(), "make install / make install-dev run `pip install -e .`"
    for sub in ([], ["serve"], ["demo"], ["models"], ["models", "probe"], ["models", "check"]):
        result = run([str(COMMAND), *sub, "--help"], {})
        assert result.returncode == 0 and result.stdout.startswith("Usage: gradio-chat-gateway"), (sub, result)
    assert run([str(COMMAND), "--version"], {}).stdout.strip() == "gradio-chat-gateway 0.1.0"


@pytest.mark.parametrize("name, value, expected", BAD_SETTINGS + [
    ("WEB_CONCURRENCY", "abc", "WEB_CONCURRENCY: must be a whole number, got 'abc'")])
def test_a_bad_setting_stops_serve_with_one_line(name, value, expected):
    one_line(run([str(COMMAND), "serve"], {name: value}), expected)


@pytest.mark.parametrize("name, value, expected", BAD_SETTINGS)
def test_a_bad_setting_stops_the_gunicorn_command_with_one_line(name, value, expected):
    one_line(run(SERVER, {name: value}), expected)


@pytest.mark.parametrize("name, value, expected", BAD_SETTINGS[:2] + BAD_SETTINGS[4:6])
def test_a_bad_setting_stops_models_check_with_one_line(name, value, expected):
    one_line(run([str(COMMAND), "models", "check"], {name: value}), expected)


@pytest.mark.parametrize("content, expected", [
    ("models: [1, 2\n", "invalid YAML"),
    ("models:\n  a:\n    space: a/b\n    flags: 012\n", "YAML read 012 as the number 10"),
    ("models:\n  a:\n    space:http://127.0.0.1:7860/\n", "put a blank after the colon"),
])
@pytest.mark.parametrize("sub", [["models", "check"], ["models", "probe", "a/b"]])
def test_a_bad_models_file_is_one_line_for_the_commands(tmp_path, content, expected, sub):
    path = tmp_path / "models.yaml"
    path.write_text(content)
    one_line(run([str(COMMAND), *sub], {"MODELS_FILE": str(path)}), expected)


BAD_KEYS_FILES = [
    (None, "cannot be read: No such file or directory"),
    ("keys:\n  - name: team-a\n", "keys[0].key_sha256: give exactly one of key_sha256 and key"),
    ("keys: [1, 2\n", "invalid YAML"),
]


@pytest.mark.parametrize("content, expected", BAD_KEYS_FILES)
@pytest.mark.parametrize("argv", [[str(COMMAND), "serve"], SERVER, [str(COMMAND), "models", "check"]],
                         ids=["serve", "gunicorn", "models check"])
def test_a_bad_keys_file_stops_the_server_and_the_commands_with_one_line(tmp_path, argv, content, expected):
    path = tmp_path / "keys.yaml"
    if content is not None:
        path.write_text(content)
    result = run(argv, {"KEYS_FILE": str(path), "BUILTIN_MODELS": "false"})
    one_line(result, f"KEYS_FILE {path}: {expected}")
    assert "Worker failed to boot" not in result.stderr


def compose_environment() -> dict[str, str]:
    """docker-compose.yml's environment as the container gets it with no .env file: each ${NAME:-}
    empty (LISTEN and PORT set for the test: a port of its own on the loopback)."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["gateway"]
    env = {name: "" for name in service["environment"]}
    return {**env, "LISTEN": "127.0.0.1", "PORT": str(free_port())}


def test_serve_starts_with_composes_environment_where_every_setting_is_empty(tmp_path):
    """gunicorn read WEB_CONCURRENCY="" with int() (a traceback), and prometheus_client took an empty
    PROMETHEUS_MULTIPROC_DIR for its working directory (the image's /app is not writable)."""
    env = compose_environment()
    assert env["WEB_CONCURRENCY"] == env["PROMETHEUS_MULTIPROC_DIR"] == "" and len(env) > 20
    proc = subprocess.Popen([str(COMMAND), "serve"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env})
    status = None
    try:
        end = time.monotonic() + 60
        while status != 200 and time.monotonic() < end and proc.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{env['PORT']}/readyz", timeout=2).status_code
            except requests.RequestException:
                time.sleep(0.2)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert status == 200, output
    assert "Traceback" not in output, output
    assert list(tmp_path.iterdir()) == []          # nothing written to the working directory


def test_check_says_an_open_gateway_does_not_spend_hf_token(tmp_path):
    # No model to probe: what matters is the credential line, as a request would choose it.
    path = write_models(tmp_path / "models.yaml", {})
    env = {"MODELS_FILE": str(path), "BUILTIN_MODELS": "false", "HF_TOKEN": "hf_operatorTokenNeverShown"}
    opened = run([str(COMMAND), "models", "check"], env)
    assert "Credential: anonymous; HF_TOKEN is set but not used: an open gateway" in opened.stdout
    keyed = run([str(COMMAND), "models", "check"], {**env, "GATEWAY_API_KEYS": "sk-a"})
    assert "Credential: the operator's HF_TOKEN (GATEWAY_API_KEYS is set, so keyed callers spend it)" in keyed.stdout
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {key: sk-team-a-key, name: team-a}\n")
    keys_file = run([str(COMMAND), "models", "check"], {**env, "KEYS_FILE": str(keys)})
    assert "Credential: the operator's HF_TOKEN (KEYS_FILE is set, so keyed callers spend it)" in keys_file.stdout
    output = opened.stdout + opened.stderr + keyed.stdout + keyed.stderr + keys_file.stdout + keys_file.stderr
    assert "hf_operatorTokenNeverShown" not in output


def test_banner_names_version_url_models_mode_and_proxy_and_warns(tmp_path):
    path = write_models(tmp_path / "models.yaml", {"a": "a/b", "b": "http://127.0.0.1:9/"})
    server = Gunicorn({"MODELS_FILE": str(path), "BUILTIN_MODELS": "false", "HF_TOKEN": "hf_unusedToken123"})
    try:
        server.wait_ready()
        output = server.output()
    finally:
        server.stop()
    assert f"gradio-chat-gateway 0.1.0 listening on http://127.0.0.1:{server.port} " \
           f"(API base http://127.0.0.1:{server.port}/v1); 1 gevent worker (WEB_CONCURRENCY)" in output
    assert f"models: 2 (built-in ones hidden by BUILTIN_MODELS=false, 2 from MODELS_FILE {path})" in output
    assert "mode: open (no GATEWAY_API_KEYS" in output and "proxy: off" in output
    assert "WARNING" in output and "HF_TOKEN is set but GATEWAY_API_KEYS is not" in output
    assert "open gateway bound to" not in output          # 127.0.0.1 is not public
    assert "hf_unusedToken123" not in output


def test_warnings_for_an_open_gateway_on_a_public_address():
    from gateway.banner import banner, warnings
    from gateway.config import load_settings
    from gateway.registry import load_registry

    public = load_settings({"LISTEN": "0.0.0.0", "WEB_CONCURRENCY": "2"})
    [warning] = warnings(public)
    assert warning.startswith("open gateway bound to 0.0.0.0: anyone who can reach port 8000 can use it")
    keyed = load_settings({"LISTEN": "0.0.0.0", "GATEWAY_API_KEYS": "sk-1,sk-2", "HF_TOKEN": "hf_x",
                           "USE_PROXY": "yes", "PROXY_URL": "socks5h://user:pw@proxy:1080"})
    assert warnings(keyed) == []
    lines = banner(keyed, load_registry(keyed))
    assert "mode: keyed (2 gateway keys; HF_TOKEN spent for keyed callers)" in lines
    assert lines[1] == "models: 8 (8 built-in)"
    assert any(line.startswith("proxy: socks5h://proxy:1080;") for line in lines)
    assert "pw" not in " ".join(lines)


# ---------------------------------------------------------------- SIGHUP under load

STREAM_WORDS = 20


def slow_stream_app() -> FakeGradio:
    """A streaming app whose answers take about 10 s: long enough to span two reloads."""
    events: list[Any] = []
    for i in range(1, STREAM_WORDS + 1):
        events += [("generating", [" ".join(f"w{j}" for j in range(i))]), ("pause", 0.5)]
    events.append(("complete", [" ".join(f"w{j}" for j in range(STREAM_WORDS))]))
    return FakeGradio(Script(events=events))


def open_stream(url: str, opened: threading.Semaphore, results: dict[int, str], i: int,
                headers: dict[str, str] | None = None) -> None:
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": f"user {i}"}]}
    seen: list[str] = []
    try:
        with requests.post(url + "/v1/chat/completions", json=body, headers=headers, stream=True,
                           timeout=60) as resp:
            seen.append(f"status {resp.status_code}")
            lines = resp.iter_lines(decode_unicode=True)
            for line in lines:
                seen.append(line)
                if line.startswith("data: {") and '"content":"w' in line.replace(" ", ""):
                    break
            opened.release()                         # this stream is open
            seen += [line for line in lines if line]
    except Exception as exc:  # noqa: BLE001 - a dropped stream is what this test counts
        seen.append(f"dropped: {exc!r}")
    results[i] = "\n".join(seen)


def both_workers_ready(server: Gunicorn) -> None:
    """/healthz answers once one worker is up: a worker still loading the app reads the files
    as they are then, the broken edit included (it failed to boot, which no SIGHUP caused)."""
    wait_for(lambda: server.output().count("Worker ready (pid:") >= 2, server, "both workers ready")


def wait_for(predicate: Any, server: Gunicorn, what: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert server.proc.poll() is None, f"gunicorn exited while waiting for {what}:\n{server.output()}"
        try:
            if predicate():
                return
        except requests.RequestException as exc:
            raise AssertionError(f"{exc!r} while waiting for {what}:\n{server.output()}") from None
        time.sleep(0.1)
    raise AssertionError(f"no {what}:\n{server.output()}")


def model_ids(server: Gunicorn) -> set[str]:
    return {m["id"] for m in requests.get(server.url + "/v1/models", timeout=10).json()["data"]}


def open_streams(server: Gunicorn, streams: int, results: dict[int, str],
                 headers: dict[str, str] | None = None) -> list[threading.Thread]:
    """Open streams of the slow model, five at a time (the stand-in app's plain HTTP server drops
    connections of a larger burst); return once every one has its first word."""
    opened = threading.Semaphore(0)
    threads = [threading.Thread(target=open_stream, args=(server.url, opened, results, i, headers))
               for i in range(streams)]
    for first in range(0, streams, 5):
        group = threads[first:first + 5]
        for t in group:
            t.start()
        for _ in group:
            assert opened.acquire(timeout=30), server.output()
    return threads


def assert_every_stream_ended_normally(results: dict[int, str], streams: int) -> None:
    assert len(results) == streams
    last_word = f"w{STREAM_WORDS - 1}"
    for i, text in results.items():
        assert text.endswith("data: [DONE]") and '"finish_reason":"stop"' in text.replace(" ", ""), (i, text)
        assert "error" not in text and last_word in text, (i, text)


def test_sighup_refuses_a_bad_models_file_and_applies_a_good_one_without_dropping_streams(tmp_path):
    app = slow_stream_app()
    path = write_models(tmp_path / "models.yaml", {"slow": app.url})
    server = Gunicorn({"MODELS_FILE": str(path), "BUILTIN_MODELS": "false", "SSE_KEEPALIVE": "0.5"}, workers=2)
    streams = 20
    results: dict[int, str] = {}
    threads: list[threading.Thread] = []
    try:
        server.wait_ready()
        both_workers_ready(server)
        threads = open_streams(server, streams, results)

        path.write_text("models:\n  slow:\n    space: a/b\n    flags: 012\n")        # a broken edit
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reload refused" in server.output(), server, "refusal")
        refusal = [line for line in server.output().splitlines() if "configuration error" in line]
        assert len(refusal) == 1 and "YAML read 012 as the number 10" in refusal[0], refusal
        assert model_ids(server) == {"slow"}                   # the old workers keep serving

        write_models(path, {"slow": app.url, "added": app.url})                     # the fix
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: model_ids(server) == {"slow", "added"}, server, "the new model")
    finally:
        for t in threads:
            t.join(60)
        server.stop()
        app.stop()
    output = server.output()
    assert "Traceback" not in output and "Worker failed to boot" not in output
    assert output.count("Booting worker") >= 4           # the good reload replaced both workers
    assert_every_stream_ended_normally(results, streams)     # after both reloads


def test_sighup_refuses_a_bad_keys_file_and_applies_a_good_one_without_dropping_streams(tmp_path):
    """Workers read KEYS_FILE as they boot: a broken one took the whole service down on SIGHUP."""
    app = slow_stream_app()
    models = write_models(tmp_path / "models.yaml", {"slow": app.url})
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {key: sk-team-a-key, name: team-a}\n")
    server = Gunicorn({"MODELS_FILE": str(models), "KEYS_FILE": str(keys), "BUILTIN_MODELS": "false",
                       "SSE_KEEPALIVE": "0.5"}, workers=2)
    team_a, team_b = ({"Authorization": f"Bearer sk-team-{t}-key"} for t in "ab")

    def status_for(headers: dict[str, str]) -> int:
        return requests.get(server.url + "/v1/models", headers=headers, timeout=10).status_code

    streams = 10
    results: dict[int, str] = {}
    threads: list[threading.Thread] = []
    try:
        server.wait_ready()
        both_workers_ready(server)
        threads = open_streams(server, streams, results, team_a)

        keys.write_text("keys:\n  - {key: sk-team-a-key, name: team-a, hf_token: env:TEAM_A_HF}\n")  # broken
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reload refused" in server.output(), server, "refusal")
        refusal = [line for line in server.output().splitlines() if "configuration error" in line]
        assert len(refusal) == 1 and refusal[0].endswith(
            f"KEYS_FILE {keys}: keys[0].hf_token: the environment variable TEAM_A_HF is not set"), refusal
        assert status_for(team_a) == 200 and status_for(team_b) == 401     # the old workers keep serving

        keys.write_text("keys:\n  - {key: sk-team-a-key, name: team-a}\n  - {key: sk-team-b-key, name: team-b}\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_for(lambda: status_for(team_b) == 200, server, "the new key")
    finally:
        for t in threads:
            t.join(60)
        server.stop()
        app.stop()
    output = server.output()
    assert "Traceback" not in output and "Worker failed to boot" not in output
    assert output.count("Booting worker") >= 4           # the good reload replaced both workers
    assert_every_stream_ended_normally(results, streams)


def readme_commands() -> list[str]:
    """Command lines of the README's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in text.split("```bash\n")[1:]:
        body = block.split("```")[0].replace("\\\n", " ")
        lines += [line.split("  #")[0].strip() for line in body.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    return lines


# The README's commands that are not the project's own: what a reader has, or installs apart.
SYSTEM_COMMANDS = {"curl", "docker", "kill"}
# Interpreters of the project's venv: typed bare, they need the venv on PATH, which set-up never puts there.
VENV_INTERPRETERS = ("python", "flask", "pytest")


def readme_inline_commands() -> list[str]:
    """Inline code of the README (its changelog aside) that runs an interpreter of the venv."""
    text = (ROOT / "README.md").read_text().split("\n## Changelog\n")[0]
    spans = re.findall(r"`([^`\n]+)`", text)
    return [span for span in spans if len(span.split()) > 1
            and span.split()[0].rsplit("/", 1)[-1] in VENV_INTERPRETERS]


def check_gateway_command(line: str, words: list[str]) -> None:
    sub = [w for w in words[:2] if not w.startswith("-") and w in {"serve", "demo", "models", "probe", "check"}]
    result = run([str(COMMAND), *sub, "--help"], {})
    assert result.returncode == 0, (line, result.stderr)
    options = [w.split("=")[0] for w in words if w.startswith("--") and w != "--help"]
    assert all(option in result.stdout for option in options), (line, options)


def test_every_readme_command_runs_as_written():
    """Each command line of a bash block: a tool of .venv/bin (a gateway sub-command, a module or
    app file that exists), a make target that exists, or a listed system command."""
    commands = readme_commands()
    assert {"serve", "demo", "models"} <= {c.split("gradio-chat-gateway ")[1].split()[0] for c in commands
                                           if ".venv/bin/gradio-chat-gateway " in c}
    venv = Path(sys.executable).parent
    for line in commands:
        words = shlex.split(line)
        while re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):          # MODELS_FILE=models.yaml .venv/bin/...
            words.pop(0)
        tool, args = words[0], words[1:]
        if tool.startswith(".venv/bin/"):
            name = tool.removeprefix(".venv/bin/")
            assert (venv / name).exists(), (line, f"{name} is not installed in the venv")
            if name == "gradio-chat-gateway":
                check_gateway_command(line, args)
            elif name == "python" and args[:1] == ["-m"]:
                module = ROOT / args[1].replace(".", "/")
                assert module.with_suffix(".py").exists() or (module / "__main__.py").exists(), line
            elif name == "flask":
                assert (ROOT / f"{args[args.index('--app') + 1]}.py").exists(), line
        elif tool == "make":
            dry = subprocess.run(["make", "-n", args[0]], cwd=ROOT, capture_output=True, text=True, timeout=30)
            assert dry.returncode == 0, (line, dry.stderr)
        else:
            assert tool in SYSTEM_COMMANDS, (line, "neither .venv/bin/..., make, nor a listed system command")
    bare = [span for span in readme_inline_commands() if not span.startswith(".venv/bin/")]
    assert bare == [], "write these .venv/bin/... as set-up installs them"


# ---------------------------------------------------------------- Ctrl-C, the demo, installs


def interrupted(argv: list[str], env: dict[str, str], ready_url: str, ready: Any) -> tuple[int, str, Any]:
    """Start argv in its own process group, wait until ready(ready_url), then Ctrl-C the group (as a
    terminal does); its exit code, its output, and what ready returned."""
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = None
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and proc.poll() is None:
            try:
                seen = ready(ready_url)
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, output, seen


def test_ctrl_c_stops_serve_without_a_traceback():
    port = free_port()
    for _ in range(3):                 # it printed gevent's traceback in 3 of 4 tries before
        code, output, status = interrupted(
            [str(COMMAND), "serve", "--listen", "127.0.0.1", "--port", str(port), "--workers", "2"],
            {}, f"http://127.0.0.1:{port}/healthz", lambda url: requests.get(url, timeout=2).status_code)
        assert status == 200 and code == 0, output
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output


def test_demo_serves_only_its_own_model_on_the_given_ports_and_stops_on_ctrl_c():
    pytest.importorskip("gradio")
    port, app_port = free_port(), free_port()

    def answer(url: str) -> tuple[set[str], str]:
        ids = {m["id"] for m in requests.get(url + "/v1/models", timeout=2).json()["data"]}
        resp = requests.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "demo", "messages": [{"role": "user", "content": "hi"}]})
        return ids, resp.json()["choices"][0]["message"]["content"]

    code, output, (ids, text) = interrupted(
        [str(COMMAND), "demo", "--port", str(port), "--app-port", str(app_port)], {"HF_TOKEN": ""},
        f"http://127.0.0.1:{port}", answer)
    assert ids == {"demo"} and "You said: “hi”" in text
    assert f"http://127.0.0.1:{app_port}/" in output
    assert code == 0 and "Traceback" not in output, output


def test_demo_needs_gradio_only_and_installs_show_progress():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'demo = ["gradio==' in pyproject
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("-q" not in line.split() for line in installs)
    [demo_install] = [line for line in makefile.splitlines() if "'.[demo]'" in line]
    assert "requirements-dev" not in demo_install
