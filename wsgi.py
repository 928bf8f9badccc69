"""The WSGI entry point: gunicorn -c gunicorn.conf.py wsgi:app (and flask --app wsgi ...)."""
import sys

from gateway import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:        # flask --app wsgi models check: one line, like the server
    sys.exit(f"gradio-chat-gateway: configuration error: {exc}")
