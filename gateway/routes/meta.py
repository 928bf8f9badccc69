"""GET /metrics (Prometheus text format) and GET /openapi.json."""
from __future__ import annotations

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue

from .. import metrics
from ..http import gateway_state

bp = Blueprint("meta", __name__)


@bp.get("/metrics")
def get_metrics() -> ResponseReturnValue:
    """Prometheus metrics, summed over every gunicorn worker."""
    state = gateway_state()
    state.upstream.pools.publish(state.registry)        # the pools' cooldowns, read when scraped
    return Response(metrics.exposition(), mimetype=None, content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def get_openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this API."""
    return gateway_state().openapi
