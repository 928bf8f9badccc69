"""Logging: the standalone gateway's format (text or JSON) and the one access line per request.

The access line carries ids, names, numbers and the upstream host only: never a
token, a header value or a message body.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from .config import Settings

access_log = logging.getLogger("gateway.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# A value written bare in the text access line; anything else is written as a JSON string, so a
# path with `%0a` or spaces in it stays one field of one line (a log reader cannot be fooled).
BARE = re.compile(r"[A-Za-z0-9._:/@+,%~-]+")
QUERY = re.compile(r"\?[^\s\"']*")
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; the access line's fields sit at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": "access" if access else record.getMessage()}
        line.update(access or {})
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (gunicorn and pytest swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: Settings) -> None:
    """For the standalone gateway only: an embedding host app keeps its own logging."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(settings.log_level)
    logging.getLogger("gateway").setLevel(settings.log_level)
    hide_query_strings()


def log_access(fields: dict[str, Any]) -> None:
    """The access line: key=value pairs as text; the same fields as JSON keys."""
    access_log.info("%s", _Line(fields), extra={"access": fields})


def access_logged() -> bool:
    """Whether an access line would be written: it is built only then (LOG_LEVEL=warning and up
    write none, and cost nothing)."""
    return access_log.isEnabledFor(logging.INFO)


class _Line:
    """The text of an access line, made when a handler formats it, not before."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{key}={_text(value)}" for key, value in self.fields.items())


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if BARE.fullmatch(text) else json.dumps(text)


class HideQueryStrings(logging.Filter):
    """At DEBUG, urllib3 logs each request's path: its query string (a signed image URL's token)
    is cut to `?…` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(QUERY.sub("?…", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = QUERY.sub("?…", record.msg)
        return True


def hide_query_strings() -> None:
    """Install HideQueryStrings on the HTTP libraries' loggers (once)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
            logger.addFilter(HideQueryStrings())
