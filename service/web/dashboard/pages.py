"""Rendering: the Jinja environment (autoescaped), its filters, and what every dashboard page carries: the headers,
and whether actions need the API token (base.html asks for it then)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from service.settings import get_settings

HERE = Path(__file__).parent

#: The pages load only their own script and stylesheet: even if something slipped through escaping, an injected
#: inline script would not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def pretty(value: Any) -> str:
    """JSON for people; the template escapes it, so `<script>` in a payload shows as text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def short_time(stamp: str | None) -> str:
    """ "2025-01-31 14:03:07" from ISO 8601 UTC; the full stamp goes in the element's title."""
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["pretty"] = pretty
environment.filters["short_time"] = short_time


def render(template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """`context` names the page's `section` (the navigation link shown as current) besides its own values."""
    html = environment.get_template(template).render({"token_required": bool(get_settings().api_token), **context})
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
