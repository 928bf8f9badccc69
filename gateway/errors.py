"""The gateway's exceptions, and the one place that turns them into responses.

GatewayError                      500  server_error          internal_error
├── InvalidRequest                400  invalid_request_error (param, code)
├── RequestTooLarge               413  invalid_request_error request_too_large
├── RequestTimeout                408  invalid_request_error request_timeout
├── InvalidApiKey                 401  invalid_request_error invalid_api_key
├── ModelNotFound                 404  invalid_request_error model_not_found
├── NotFound                      404  invalid_request_error not_found
├── MethodNotAllowed              405  invalid_request_error method_not_allowed
└── UpstreamError                 502  upstream_error        upstream_error
    ├── UpstreamUnauthorized      401  invalid_request_error upstream_unauthorized
    ├── SpaceNotFound             404  invalid_request_error space_not_found
    ├── UpstreamQuota             429  rate_limit_exceeded   upstream_quota_exceeded
    │   └── ZeroGpuRefused        429  (the app ran nothing: another Space may run the prompt)
    ├── UpstreamUnavailable       503  upstream_unavailable  upstream_unavailable
    ├── UpstreamTimeout           504  upstream_timeout      upstream_timeout
    └── UpstreamApiChanged        502  (retried once with fresh metadata first)

Other modules raise; only this one builds error bodies and responses.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response

from .redaction import redact_message

log = logging.getLogger("gateway")


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status_code = 500
    type = "server_error"
    code: str | None = "internal_error"
    default_message = "The gateway failed to handle the request."

    def __init__(self, message: str | None = None, *, param: str | None = None,
                 code: str | None = None, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}

    def redact(self, *secrets: str | None) -> "GatewayError":
        """Cut credentials out of the message, in any form redaction.py finds (CONTRACT §5)."""
        message = redact_message(self.message, *secrets)
        if message != self.message:
            self.message = message
            self.args = (message,)
        return self

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidRequest(GatewayError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_value"
    default_message = "The request is invalid."


class RequestTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"
    default_message = "The request body is too large."


class RequestTimeout(InvalidRequest):
    status_code = 408
    code = "request_timeout"
    default_message = "The request body did not arrive in time."


class InvalidApiKey(InvalidRequest):
    status_code = 401
    code = "invalid_api_key"
    default_message = "Missing or invalid API key for this gateway."


class ModelNotFound(InvalidRequest):
    status_code = 404
    code = "model_not_found"


class NotFound(InvalidRequest):
    status_code = 404
    code = "not_found"
    default_message = "No such endpoint."


class MethodNotAllowed(InvalidRequest):
    status_code = 405
    code = "method_not_allowed"
    default_message = "Method not allowed for this endpoint."


class UpstreamError(GatewayError):
    status_code = 502
    type = "upstream_error"
    code = "upstream_error"
    default_message = "The Gradio app failed to answer."


class UpstreamUnauthorized(UpstreamError):
    status_code = 401
    type = "invalid_request_error"
    code = "upstream_unauthorized"
    default_message = "The Space refused the credentials the gateway may use."


class SpaceNotFound(UpstreamError):
    status_code = 404
    type = "invalid_request_error"
    code = "space_not_found"
    default_message = "The model's Space does not exist."


class UpstreamQuota(UpstreamError):
    status_code = 429
    type = "rate_limit_exceeded"
    code = "upstream_quota_exceeded"
    default_message = "The upstream quota is exceeded."


class ZeroGpuRefused(UpstreamQuota):
    """ZeroGPU's quota error event: the app took the job but refused to run it for the caller's
    quota, so the prompt ran nowhere. The one quota error after acceptance that a pool may pass
    to its next Space; any other (an HTTP 429 on the event stream) may come from a running job."""


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    type = "upstream_unavailable"
    code = "upstream_unavailable"
    default_message = "The Gradio app is unavailable."


class UpstreamTimeout(UpstreamError):
    status_code = 504
    type = "upstream_timeout"
    code = "upstream_timeout"
    default_message = "The Gradio app did not answer in time."


class UpstreamApiChanged(UpstreamError):
    """The app's API no longer matches the cached description (a redeployed Space)."""

    default_message = "The Gradio app's API changed."


def as_gateway_error(exc: BaseException, request_id: str | None = None) -> GatewayError:
    """Return exc itself when it is ours; log anything else as a bug and hide it."""
    if isinstance(exc, GatewayError):
        return exc
    log.error("internal error (request %s)", request_id or "-", exc_info=exc)
    suffix = f" (request id {request_id})" if request_id else ""
    return GatewayError(f"The gateway failed to handle the request{suffix}.")


def error_response(exc: BaseException, request_id: str | None = None) -> Response:
    """Render any exception as an OpenAI-shaped JSON error response."""
    err = as_gateway_error(exc, request_id)
    return Response(json.dumps(err.to_dict()), status=err.status_code,
                    mimetype="application/json", headers=err.headers())
