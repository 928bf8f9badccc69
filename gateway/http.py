"""Request plumbing shared by the blueprints: request ids, API keys, JSON bodies."""
from __future__ import annotations

import json
import re
import secrets
from typing import Any

from flask import Flask, g, request
from marshmallow import Schema, ValidationError

from .errors import InvalidRequest, RequestTooLarge
from .schemas import first_error

SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id() -> str:
    """The client's X-Request-Id when it is sane, else a new one; stable within a request."""
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-Id", "")
        rid = g.request_id = given if SANE_ID.match(given) else "req_" + secrets.token_hex(12)
    return rid


def check_body_size(limit: int) -> None:
    """413 from Content-Length alone, before the body is read; a cap for chunked bodies too."""
    length = request.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    request.max_content_length = limit


def load_body(schema: Schema) -> Any:
    """Parse and validate a JSON object body, or raise a 400 naming the field."""
    if request.mimetype != "application/json":
        raise InvalidRequest("The body must be JSON sent as Content-Type: application/json.",
                             param=None, code="invalid_content_type")
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not valid UTF-8.", code="invalid_json") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    try:
        return schema.load(body)
    except ValidationError as exc:
        param, message = first_error(exc.messages)
        missing = message == "Missing data for required field."
        raise InvalidRequest(f"'{param}' is a required field." if missing else f"Invalid '{param}': {message}",
                             param=param, code="missing_field" if missing else "invalid_value") from None
    except RecursionError:
        raise InvalidRequest("The body is nested too deeply.", code="invalid_json") from None


def add_request_id_header(response: Any) -> Any:
    response.headers["X-Request-Id"] = request_id()
    return response


def gateway_state(app: Flask | None = None) -> Any:
    from flask import current_app

    return (app or current_app).extensions["gradio_chat_gateway"]
