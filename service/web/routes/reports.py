"""Downloading the files generate_report writes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from service.kits import reports

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
    settings = reports.get_report_settings()
    try:
        path = reports.find_report(settings.reports_dir, name)
    except reports.BadReportName as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    except reports.ReportNotFound:
        raise HTTPException(status_code=404, detail="Report not found") from None
    media_type = reports.MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, filename=path.name)
