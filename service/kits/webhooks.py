"""Delivering a webhook: Standard Webhooks signing, a guard against private destinations, and reading the answer."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook

from service.domain.errors import PermanentError
from service.domain.rates import RateSpec
from service.settings import SigningSecret

if TYPE_CHECKING:
    import httpx


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    webhook_signing_secret: SigningSecret = ""
    webhook_timeout_s: float = Field(10.0, gt=0, le=300)
    webhook_allow_private: bool = False
    webhook_host_rate_limit: RateSpec = "50/s"
    webhook_host_concurrency: int = Field(5, ge=1, le=1000)
    webhook_response_bytes: int = Field(1024, ge=0, le=1_048_576)


class TemporaryWebhookError(Exception):
    """A 5xx, a timeout or a dropped connection: worth another attempt later."""


class RetryLater(Exception):
    """The receiver said when to come back (429 or 503 with Retry-After)."""

    def __init__(self, delay_ms: int, reason: str) -> None:
        super().__init__(reason)
        self.delay_ms = delay_ms


@dataclass(frozen=True)
class Response:
    status: int
    duration_ms: int
    body: str


#: Headers the delivery sets itself; a payload may not override them.
RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"}
)


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


#: IPv6 forms whose last 32 bits are an IPv4 destination that a gateway or the host's own stack connects to:
#: NAT64's well-known prefix, IPv4-compatible (deprecated, but some stacks still route it) and IPv4-translated.
_CARRYING_IPV4 = tuple(ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))
#: Not public whatever Python's version says: site-local (deprecated, still routed inside some networks) and
#: NAT64's local-use prefix, which may embed any IPv4 address anywhere in it (RFC 8215).
_NOT_PUBLIC_V6 = {
    "site-local": ipaddress.IPv6Network("fec0::/10"),
    "non-public": ipaddress.IPv6Network("64:ff9b:1::/48"),
}


def _inner_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4, NAT64...), judged in its place."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if int(address) > 1 and any(address in network for network in _CARRYING_IPV4):  # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address is not a public destination, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _inner_ipv4(address)
        if inner is not None:
            return _kind(inner)
        for kind, network in _NOT_PUBLIC_V6.items():
            if address in network:
                return kind
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return "non-public"
    return None


def resolve(url: str, *, allow_private: bool) -> list[str]:
    """The addresses to connect to, in order. Every address the name resolves to must be public unless
    allow_private: a name with one public and one private address would otherwise let the second be reached."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise TemporaryWebhookError(f"cannot resolve {host}: {error.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for text in addresses:
            kind = _kind(ipaddress.ip_address(text.split("%")[0]))
            if kind:
                raise PermanentError(
                    f"refused: {host} resolves to {text}, a {kind} address (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
                )
    return addresses


def pinned(url: str, address: str) -> tuple[str, str]:
    """The URL with its host replaced by the checked address (so a second DNS answer cannot differ), and the
    Host header that keeps the request what it was."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header_of(url)


def host_header_of(url: str) -> str:
    """The Host header for a URL: an IPv6 literal keeps its brackets (RFC 9110), which urlsplit's hostname drops."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host + (f":{parts.port}" if parts.port else "")


def envelope(event: str, body: dict[str, Any], at: datetime) -> str:
    """The body as Standard Webhooks suggests: {"type", "timestamp", "data"}."""
    stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": stamp, "data": body}, separators=(",", ":"))


def retry_after_ms(value: str | None, *, now: datetime | None = None) -> int | None:
    """Retry-After is seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int((when - (now or datetime.now(UTC))).total_seconds() * 1000))


class Deliverer:
    """One per process: an httpx client (connections are pooled) and the signer."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.signer = Webhook(settings.webhook_signing_secret) if settings.webhook_signing_secret else None
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        # Made, and httpx imported, at the first delivery: every worker process declares this actor, and importing
        # httpx was a tenth of a worker's start-up, which delays the first job of every queue.
        with self._client_lock:
            if self._client is None:
                import httpx

                # trust_env=False: a proxy from the environment would connect on our behalf and undo the address check.
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.settings.webhook_timeout_s), follow_redirects=False, trust_env=False
                )
            return self._client

    def deliver(
        self, *, webhook_id: str, url: str, event: str, body: dict[str, Any], headers: dict[str, str]
    ) -> Response:
        """POST the signed event. Raises PermanentError, TemporaryWebhookError or RetryLater."""
        if self.signer is None:
            raise PermanentError("WEBHOOK_SIGNING_SECRET is not set; refusing to send an unsigned webhook")
        addresses = resolve(url, allow_private=self.settings.webhook_allow_private)
        now = datetime.now(UTC)
        data = envelope(event, body, now)
        signed = {
            **headers,
            "content-type": "application/json",
            "user-agent": "jobservice-webhooks/1",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(webhook_id, now, data),
        }
        extensions = {"sni_hostname": host_of(url)} if url.lower().startswith("https") else {}
        import httpx  # imported by the client already: see `client`

        started = time.monotonic()
        for i, address in enumerate(addresses):
            target, host_header = pinned(url, address)
            try:
                with self.client.stream(
                    "POST", target, content=data, headers={**signed, "host": host_header}, extensions=extensions
                ) as answer:
                    first = self._first_bytes(answer)
                break
            except httpx.ConnectError as error:
                if i + 1 < len(addresses):
                    continue  # the name has another address: try it, as a browser would
                raise TemporaryWebhookError(f"connection failed: {error}") from None
            except httpx.TimeoutException:
                raise TemporaryWebhookError(f"timed out after {self.settings.webhook_timeout_s:g} s") from None
            except httpx.TransportError as error:
                raise TemporaryWebhookError(f"connection failed: {type(error).__name__}: {error}") from None
        response = Response(answer.status_code, int((time.monotonic() - started) * 1000), first)
        return self._judge(response, answer.headers.get("retry-after"))

    def _first_bytes(self, answer: httpx.Response) -> str:
        limit = self.settings.webhook_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in answer.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(chunks)[:limit].decode(errors="replace")

    @staticmethod
    def _judge(response: Response, retry_after: str | None) -> Response:
        status = response.status
        said = f"HTTP {status}" + (f": {response.body[:200]}" if response.body else "")
        if 200 <= status < 300:
            return response
        if status in (429, 503):
            delay = retry_after_ms(retry_after)
            if delay is not None:
                raise RetryLater(delay, f"{said} (Retry-After {retry_after})")
        if status >= 500 or status in (408, 429):
            raise TemporaryWebhookError(said)
        if 300 <= status < 400:
            raise PermanentError(f"{said} (redirects are not followed; deliver to the final URL)")
        raise PermanentError(said)
