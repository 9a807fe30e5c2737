"""Downloading the files generate_report writes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from service.domain.reports import BadReportName
from service.ops.reports import ReportNotFound, find_report
from service.settings import ReportSettings, load_settings

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get(
    "/{name:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}, "application/json": {}}, "description": "the report file"},
        400: {"description": "the name has a path in it"},
        404: {"description": "no such report"},
    },
)
def download_report(name: str) -> FileResponse:
    # `:path` lets "a/b" and "../x" reach this check and get a clear 400, instead of a bare routing 404.
    try:
        report = find_report(load_settings(ReportSettings).reports_dir, name)
    except BadReportName as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    except ReportNotFound:
        raise HTTPException(status_code=404, detail="Report not found") from None
    return FileResponse(report.path, media_type=report.media_type, filename=report.path.name)
