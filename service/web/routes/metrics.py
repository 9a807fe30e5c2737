"""GET /metrics: the service's figures in Prometheus' text format (workers serve their own on their port)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.web.deps import MetricsDep

router = APIRouter(tags=["operations"])

#: The classic text format, which every Prometheus 2.x understands (prometheus-client's "latest" is newer).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Queue depth, jobs by state, totals and run times, for Prometheus",
)
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
