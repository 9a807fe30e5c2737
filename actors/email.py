"""send_email: one message through SMTP, retried on 4xx and network errors, never sent twice for one job."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Annotated, Any

import dramatiq
import redis
from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, field_validator, model_validator

from service.bootstrap import redis_client
from service.domain.context import current_job
from service.domain.errors import PermanentError
from service.kits import mail
from service.kits.once import Once
from service.settings import load_settings
from service.worker.typed_actor import job

logger = logging.getLogger(__name__)

settings = load_settings(mail.MailSettings)

#: Headers the job sets itself; letting a payload set them would forge the sender or break threading.
RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "reply-to", "sender", "return-path", "mime-version"}
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field-name: printable ASCII except ":"
MAX_RECIPIENTS = 100


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Addresses = Annotated[list[EmailStr], BeforeValidator(_listify)]


def _one_line(value: str) -> str:
    problem = mail.line_break_in(value)
    if problem:
        raise ValueError(problem)
    return value


class EmailPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Addresses = Field(min_length=1, description="one address or a list")
    subject: str = Field(min_length=1, max_length=998)
    text: str
    html: str | None = None
    cc: Addresses = Field(default_factory=list)
    bcc: Addresses = Field(default_factory=list)
    reply_to: EmailStr | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers, such as X-Campaign")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid field name")
            if name.lower() in RESERVED_HEADERS or name.lower().startswith("content-"):
                raise ValueError(f"header {name!r} is set by the job and cannot be given")
            try:
                _one_line(text)
            except ValueError as error:
                raise ValueError(f"header {name!r} {error}") from None
        return value

    @field_validator("subject")
    @classmethod
    def _subject_one_line(cls, value: str) -> str:
        return _one_line(value)

    @model_validator(mode="after")
    def _not_too_many(self) -> EmailPayload:
        if len(self.to) + len(self.cc) + len(self.bcc) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
        return self


class RefusedRecipient(BaseModel):
    address: str
    code: int
    reply: str


class EmailResult(BaseModel):
    messageId: str
    accepted: list[str]
    refused: list[RefusedRecipient]
    #: True when an earlier run of this job had already handed the message over (a redelivery).
    alreadySent: bool = False


def _record(job_id: str, result: EmailResult) -> None:
    """Retried through a short Redis outage; raising here would make the job retry and send a second copy."""
    for pause in (0.2, 0.5, 1.0, 2.0, 4.0, 0.0):
        try:
            _once.record(job_id, result.model_dump(mode="json"))
            return
        except redis.RedisError as error:
            if not pause:
                logger.error("sent, but could not record it (%s); a redelivery could send it again", error)
                return
            time.sleep(pause)


# Longer than one SMTP conversation can take, so a redelivery while the first run still talks waits for it.
_once = Once(redis_client, "email", claim_ms=int(settings.smtp_timeout_s * 4 * 1000))


@job(
    EmailPayload,
    queue="email",
    max_retries=6,
    retry_backoff="exponential",
    retry_delays=[5_000],
    max_backoff=600_000,
    time_limit=120_000,
    rate_limit=settings.email_rate_limit,
)
def send_email(payload: EmailPayload) -> EmailResult:
    """Send one email. 4xx replies and network errors are retried; 5xx replies fail at once with the reply."""
    context = current_job.get()
    job_id = context.job_id if context else str(uuid.uuid4())
    outgoing = mail.Mail(
        to=list(payload.to),
        subject=payload.subject,
        text=payload.text,
        html=payload.html,
        cc=list(payload.cc),
        bcc=list(payload.bcc),
        reply_to=payload.reply_to,
        headers=payload.headers,
    )
    message_id = mail.message_id_for(job_id, settings.email_from)
    try:
        message = mail.compose(outgoing, sender=settings.email_from, message_id=message_id)
    except ValueError as error:
        # The email package refuses what the payload check let through: another attempt builds the same message.
        raise PermanentError(f"cannot build the message: {error}") from None
    claim = _once.claim(job_id)
    if claim.done is not None:
        logger.info("message already handed to SMTP by an earlier run; not sending again")
        return EmailResult.model_validate({**claim.done, "alreadySent": True})
    if claim.busy:
        raise dramatiq.Retry("another run of this job is sending it right now", delay=claim.busy_for_ms + 1000)
    try:
        delivery = mail.send(settings, message, outgoing.recipients())
    except (mail.TemporaryMailError, PermanentError):
        # Refused, so nothing was sent: the next attempt may go at once. Any other exception (a time limit
        # mid-DATA) leaves it unknown whether the server took it; the claim then stays until it lapses.
        _once.release(job_id)
        raise
    result = EmailResult(
        messageId=delivery.message_id,
        accepted=delivery.accepted,
        refused=[RefusedRecipient(address=r.address, code=r.code, reply=r.reply) for r in delivery.refused],
    )
    # Recorded at once: from here on, a redelivery of this job returns this result instead of sending again.
    _record(job_id, result)
    if settings.email_test_pause_after_accept_ms:
        time.sleep(settings.email_test_pause_after_accept_ms / 1000)
    return result
