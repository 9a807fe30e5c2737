"""Refuses state-changing requests that a browser sends from another site, token or not (cross-site request forgery)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cross_site(headers: Headers) -> bool:
    """True when a browser says the request comes from a page of another origin.

    Browsers send Origin on every cross-origin POST/DELETE and Sec-Fetch-Site on every request; other services
    and the CLI send neither, so they are never refused here.
    """
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    if origin == "null":  # sandboxed frames and file:// pages
        return True
    hosts = {headers.get("host", ""), headers.get("x-forwarded-host", "")} - {""}
    return urlsplit(origin).netloc not in hosts


class SameOriginOnly:
    """ASGI middleware: a 403 for an unsafe method whose Origin is not this host."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS and cross_site(Headers(scope=scope)):
            response = JSONResponse(
                {"detail": "cross-site request refused: send it from this service's own pages"}, status_code=403
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
