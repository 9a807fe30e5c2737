"""POST /hooks/{actor}: another system triggers a job with a Standard Webhooks signed request."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.settings import SigningSecret, load_settings
from service.web import models
from service.web.deps import InboundHooksDep
from service.web.routes.jobs import IDEMPOTENCY_KEY_MAX

router = APIRouter(prefix="/hooks", tags=["hooks"])


class HookSettings(BaseSettings):
    """HOOKS_SIGNING_SECRET: the shared secret, `whsec_` + base64 as Standard Webhooks senders issue it. Empty turns
    the route off (503)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    hooks_signing_secret: SigningSecret = ""


hook_settings = load_settings(HookSettings)

UNSIGNED: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorDetail, "description": "Missing or bad signature, or a timestamp over 5 minutes off"}
}
BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        "description": "The job's payload, signed over its exact bytes",
    },
    "parameters": [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
        for name, text in (
            (
                "webhook-id",
                f"Unique per message across all actors (at most {IDEMPOTENCY_KEY_MAX} characters); a redelivery "
                "with the same id enqueues nothing new, and the same id sent to another actor is refused (409)",
            ),
            ("webhook-timestamp", "Unix seconds; refused when more than 5 minutes off"),
            ("webhook-signature", "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated if several"),
        )
    ],
}


@router.post(
    "/{actor}",
    status_code=202,
    response_model=models.Accepted,
    responses={
        **UNSIGNED,
        **models.not_found("Unknown actor, or one whose @job does not say hooks=True"),
        **models.refused("This webhook-id was already sent to another actor"),
        **models.INVALID,
        **models.TOO_LARGE,
        503: {"model": models.ErrorDetail, "description": "RabbitMQ or Redis unreachable, or hooks not configured"},
    },
    openapi_extra=BODY,
    summary="Enqueue a job from a signed webhook (for actors declared with hooks=True)",
)
async def receive_hook(
    actor: Annotated[str, Path(max_length=200)], request: Request, hooks: InboundHooksDep, response: Response
) -> models.Accepted:
    secret = hook_settings.hooks_signing_secret
    if not secret:
        raise HTTPException(503, "Inbound hooks are off: HOOKS_SIGNING_SECRET is not set")
    hooks.check_actor(actor)
    body = await request.body()
    headers = dict(request.headers)
    try:
        # The library can trip on malformed headers with ValueError; any of it means "not signed by the sender".
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError) as error:
        raise HTTPException(401, f"Bad webhook signature: {error}") from None
    payload = _object(body)
    webhook_id = headers["webhook-id"]
    if len(webhook_id) > IDEMPOTENCY_KEY_MAX:  # it names a Redis key for a day
        raise HTTPException(
            422,
            [
                {
                    "loc": ["header", "webhook-id"],
                    "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                    "type": "string_too_long",
                    "input": None,
                }
            ],
        )
    outcome = await run_in_threadpool(hooks.enqueue, actor, webhook_id, payload)
    response.headers["Location"] = f"/jobs/{outcome.job_id}"
    return models.Accepted(jobId=outcome.job_id, status=outcome.state)


def _object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise _invalid("json_invalid", f"JSON decode error: {error}") from None
    if not isinstance(payload, dict):
        raise _invalid("dict_type", "Input should be a valid dictionary")
    return payload


def _invalid(kind: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body"], "msg": message, "type": kind, "input": None}])
