"""What every route that changes state declares alike: it answers 202, needs the bearer token (when API_TOKEN is
set) and lists 401 with its other error rows in the OpenAPI document. Routes that only read declare themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from service.web import models
from service.web.deps import Authorized

RouteT = TypeVar("RouteT", bound=Callable[..., Any])


def changing(
    route: Callable[..., Callable[[RouteT], RouteT]],
    path: str,
    model: type[Any],
    errors: dict[int | str, dict[str, Any]],
    summary: str,
) -> Callable[[RouteT], RouteT]:
    """`route` is the router's method (`router.post`, `router.delete`); `errors` the rows besides 401."""
    return route(
        path,
        status_code=202,
        response_model=model,
        responses={**errors, **models.UNAUTHORIZED},
        dependencies=[Authorized],
        summary=summary,
    )
