"""`gradio-chat-gateway`: serve, demo, models probe, models check.

Every sub-command checks the configuration the way the server does (gateway.config) and says what
is wrong in one line, without a traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from .config import ConfigError, load_settings

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
GUNICORN_CONF = os.path.join(PACKAGE_DIR, "gunicorn_conf.py")


def fail(line: str, code: int = 2) -> NoReturn:
    click.echo(f"gradio-chat-gateway: {line}", err=True)
    sys.exit(code)


def _set_env(**values: Any) -> None:
    """Options win over the environment: they become the variables the server reads."""
    for name, value in values.items():
        if value is not None:
            os.environ[name] = str(value)


def _checked_settings() -> Any:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradio-chat-gateway", prog_name="gradio-chat-gateway",
                      message="%(prog)s %(version)s")
def main() -> None:
    """An OpenAI-compatible chat API in front of Gradio apps.

    Settings come from the environment (README, Configuration); options of a sub-command
    set the variable of the same meaning.
    """


@main.command()
@click.option("--listen", help="Bind address (LISTEN, default 0.0.0.0).")
@click.option("--port", type=int, help="Port (PORT, default 8000).")
@click.option("--workers", type=int, help="gevent workers (WEB_CONCURRENCY, default: the CPU limit).")
def serve(listen: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn and gevent workers (Ctrl-C stops it, SIGHUP reloads it).

    The same as `gunicorn -c gunicorn.conf.py wsgi:app` in a clone of the repository.
    """
    _set_env(LISTEN=listen, PORT=port, WEB_CONCURRENCY=workers)
    _checked_settings()        # gunicorn itself reads WEB_CONCURRENCY as it imports: check first
    # Empty means "the default" to the gateway (docker-compose.yml passes every setting, most of them
    # empty), but gunicorn reads WEB_CONCURRENCY with int() as it imports, before gunicorn_conf.py.
    if not os.environ.get("WEB_CONCURRENCY", "1").strip():
        del os.environ["WEB_CONCURRENCY"]
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, "gateway:create_app()"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)   # gunicorn becomes this process: signals go straight to it


@main.command()
@click.option("--port", type=int, default=8000, show_default=True, help="The gateway's port.")
@click.option("--app-port", type=int, default=7860, show_default=True, help="The demo Gradio app's port.")
def demo(port: int, app_port: int) -> None:
    """A local Gradio chat app served through the gateway as the model `demo`: no account, no internet.

    Both listen on 127.0.0.1; Ctrl-C stops both. Needs gradio: pip install 'gradio-chat-gateway[demo]'.
    """
    for name, value in (("--port", port), ("--app-port", app_port)):
        if not 0 < value < 65536:
            fail(f"{name}: must be a port number 1-65535, got {value}")
    if port == app_port:
        fail("--port and --app-port must differ")
    try:
        from .demo import run_demo
    except ImportError as exc:
        fail(f"the demo needs gradio ({exc.name} is missing): pip install 'gradio-chat-gateway[demo]'")
    sys.exit(run_demo(port=port, app_port=app_port))


@main.group()
def models() -> None:
    """Inspect how the gateway maps models onto their Gradio apps."""


def _invoke_models(args: list[str]) -> None:
    """Run the Flask CLI's `models` group inside a gateway app, with the server's settings."""
    from .cli import models_cli

    if {"--help", "-h"} & set(args):
        models_cli.main(args=[a if a != "-h" else "--help" for a in args],
                        prog_name="gradio-chat-gateway models", standalone_mode=True)
    from . import create_app
    from .banner import load_configuration

    try:
        load_configuration()         # the settings, the models and keys files: one line for any mistake
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    app = create_app(env=os.environ)
    with app.app_context():
        models_cli.main(args=args, prog_name="gradio-chat-gateway models", standalone_mode=True)


@models.command(context_settings={"ignore_unknown_options": True, "help_option_names": []},
                add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def probe(args: tuple[str, ...]) -> None:
    """Show how SPACE (a Space id or a Gradio URL) maps, and a models-file entry for it.

    gradio-chat-gateway models probe SPACE [--api-name /name] [--flags NN] [--id model-id]
    """
    _invoke_models(["probe", *args])


@models.command(context_settings={"ignore_unknown_options": True, "help_option_names": []},
                add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Probe every configured model; exit 1 if any does not map cleanly."""
    _invoke_models(["check", *args])


if __name__ == "__main__":
    main()
