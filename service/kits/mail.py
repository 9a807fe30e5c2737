"""Sending mail over SMTP: settings, building the message, and telling a temporary refusal from a permanent one."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from pydantic import Field, NameEmail, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.domain.errors import PermanentError
from service.domain.rates import RateSpec


def line_break_in(value: str) -> str | None:
    """Why a header value is not one line, or None. Python's email package splits headers on every control
    character (CR, LF, VT, FF, NEL...) and on Unicode's line and paragraph separators, so any of them in a value
    would start a header of its own."""
    for char in value:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"must be a single line (no line break or control character; found U+{ord(char):04X})"
    return None


class MailSettings(BaseSettings):
    """SMTP_* and EMAIL_* variables. The defaults talk to Mailpit on localhost, the development server."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    smtp_host: str = Field("localhost", min_length=1)
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout_s: float = Field(30.0, gt=0, le=600)
    email_from: NameEmail = NameEmail("Job service", "jobs@localhost.localdomain")
    email_rate_limit: RateSpec = "100/s"
    #: Tests only: sleep this long after the server accepted a message, to kill the worker in that window.
    email_test_pause_after_accept_ms: int = Field(0, ge=0)

    @field_validator("email_from")
    @classmethod
    def _from_one_line(cls, value: NameEmail) -> NameEmail:
        problem = line_break_in(value.name)
        if problem:
            raise ValueError(f"the name {problem}")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> MailSettings:
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("SMTP_SSL and SMTP_STARTTLS exclude each other: SSL is TLS from the start (port 465)")
        if self.smtp_username and not self.smtp_password:
            raise ValueError("SMTP_PASSWORD is required when SMTP_USERNAME is set")
        return self


class TemporaryMailError(Exception):
    """The server could not take the message now (a 4xx reply, a dropped connection): try again later."""


@dataclass(frozen=True)
class Refusal:
    address: str
    code: int
    reply: str


@dataclass
class Delivery:
    """What the server said: who it accepted, who it refused and why."""

    message_id: str
    accepted: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def recipients(self) -> list[str]:
        """Envelope recipients in order, each once; Bcc is here and nowhere in the headers."""
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))


def message_id_for(job_id: str, sender: NameEmail) -> str:
    """Derived from the job id: a redelivered job makes the same Message-ID, so receivers can de-duplicate too."""
    domain = sender.email.rpartition("@")[2] or "localhost"
    return f"<{job_id}@{domain}>"


def compose(mail: Mail, *, sender: NameEmail, message_id: str) -> EmailMessage:
    """Raises ValueError naming the header when a value would not stay one line (the payload's check may have
    been skipped: a foreign sender, or a caller of this module)."""
    for name, value in [("Subject", mail.subject), ("From", sender.name), *mail.headers.items()]:
        problem = line_break_in(value)
        if problem:
            raise ValueError(f"header {name} {problem}")
    message = EmailMessage()
    message["From"] = Address(display_name=sender.name, addr_spec=sender.email)
    message["To"] = ", ".join(mail.to)
    if mail.cc:
        message["Cc"] = ", ".join(mail.cc)
    if mail.reply_to:
        message["Reply-To"] = mail.reply_to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    for name, value in mail.headers.items():
        message[name] = value
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(body.split())}".strip()


def _refusal_error(what: str, code: int, text: bytes | str) -> Exception:
    reply = _reply(code, text)
    if 400 <= code < 500:
        return TemporaryMailError(f"{what}: {reply}")
    return PermanentError(f"{what}: {reply}")


def _connect(settings: MailSettings) -> smtplib.SMTP:
    context = ssl.create_default_context()
    host, port = settings.smtp_host, settings.smtp_port
    smtp: smtplib.SMTP
    if settings.smtp_ssl:
        smtp = smtplib.SMTP_SSL(host, port, timeout=settings.smtp_timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=settings.smtp_timeout_s)
    try:
        if settings.smtp_starttls:
            smtp.starttls(context=context)
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
    except BaseException:
        smtp.close()
        raise
    return smtp


def send(settings: MailSettings, message: EmailMessage, recipients: list[str]) -> Delivery:
    """Hand one message to the SMTP server.

    Returns once the server accepted it for at least one recipient. Raises TemporaryMailError (4xx, network) or
    PermanentError (5xx, every recipient refused for good), quoting the server's reply.
    """
    sender = str(message["From"].addresses[0].addr_spec)
    message_id = str(message["Message-ID"])
    try:
        smtp = _connect(settings)
    except smtplib.SMTPAuthenticationError as error:
        raise _refusal_error("SMTP login refused", error.smtp_code, error.smtp_error) from None
    except smtplib.SMTPResponseException as error:
        raise _refusal_error("SMTP server refused the connection", error.smtp_code, error.smtp_error) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        raise TemporaryMailError(f"cannot reach SMTP server {where}: {error}") from None
    try:
        refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as error:
        refusals = [Refusal(addr, code, _reply(code, text)) for addr, (code, text) in error.recipients.items()]
        summary = "; ".join(f"{r.address}: {r.reply}" for r in refusals)
        if all(400 <= r.code < 500 for r in refusals):
            raise TemporaryMailError(f"every recipient refused for now: {summary}") from None
        raise PermanentError(f"every recipient refused: {summary}") from None
    except smtplib.SMTPSenderRefused as error:
        raise _refusal_error(f"sender {error.sender} refused", error.smtp_code, error.smtp_error) from None
    except smtplib.SMTPResponseException as error:
        raise _refusal_error("message refused", error.smtp_code, error.smtp_error) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        raise TemporaryMailError(f"connection to SMTP server lost: {error}") from None
    finally:
        # After acceptance nothing may turn into an error: QUIT is a courtesy.
        with contextlib.suppress(Exception):
            smtp.quit()
        smtp.close()
    rejected = [Refusal(addr, code, _reply(code, text)) for addr, (code, text) in refused.items()]
    accepted = [r for r in recipients if r not in refused]
    return Delivery(message_id=message_id, accepted=accepted, refused=rejected)
