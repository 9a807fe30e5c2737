"""Every environment variable of the contract, read and validated once."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, EmailStr, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service import logs
from service.domain.limits import check_overrides

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def _parse_delays(value: object) -> object:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return [int(p) for p in parts]
        except ValueError:
            raise ValueError("must be comma-separated milliseconds, such as 1000,5000,30000") from None
    return value


def _split_hosts(value: object) -> object:
    if isinstance(value, str):
        return [h.strip() for h in value.split(",") if h.strip()]
    return value


def _bracket_hosts(value: list[str]) -> list[str]:
    """Host headers carry an IPv6 address in brackets ("[::1]:8000"), so an allowed "::1" is written that way."""
    if not value:
        raise ValueError("must name at least one host, such as localhost (or * for any, which turns the guard off)")
    return [(f"[{h}]" if ":" in h and not h.startswith("[") else h).lower() for h in value]


#: What every RABBITMQ_URL entry must look like, said in each complaint about one.
_AMQP_SHAPE = "must look like amqp://user:password@host:5672/vhost"


def _amqp_nodes(value: str) -> list[str]:
    """Each node's URL, from one URL, URLs separated by commas (or Dramatiq's semicolons), or one URL whose host part
    lists the nodes (amqp://user:password@host1:5672,host2:5672/vhost). A comma in a password must be percent-encoded
    (%2C), as URLs want anyway."""
    entries = [entry.strip() for entry in re.split(r"[;,]", value) if entry.strip()]
    if len(entries) <= 1 or all("://" in entry for entry in entries):
        urls = entries or [value]
    else:
        parts = urlsplit(value.strip())
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if "," not in hosts or any("://" in entry for entry in entries[1:]):
            raise ValueError(f"{_AMQP_SHAPE}: give whole URLs separated by commas, or one URL listing its hosts")
        urls = [
            urlunsplit((parts.scheme, f"{userinfo}{at}{host.strip()}", parts.path, parts.query, parts.fragment))
            for host in hosts.split(",")
        ]
    for number, url in enumerate(urls, 1):
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            parts = parts._replace(scheme="")
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname or parts.path.startswith("//"):
            if len(urls) == 1:
                raise ValueError(_AMQP_SHAPE)
            raise ValueError(f"{_AMQP_SHAPE}, one per node (node {number} of {len(urls)} is {logs.redact(url)!r})")
    return urls


def _json_object(value: object) -> object:
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            raise ValueError('must be JSON, such as {"deliver_webhook": {"key_concurrency": 4}}') from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object of actors, such as {"deliver_webhook": {"key_concurrency": 4}}')
    return value


def _check_delays(value: list[int]) -> list[int]:
    if not value or any(d < 0 for d in value):
        raise ValueError("must list at least one delay, none negative")
    return value


def _check_sentinels(value: list[str]) -> list[str]:
    for address in value:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{address!r} is not host:port; list the Sentinels as host:26379,host2:26379")
    return value


def _check_signing_secret(value: str) -> str:
    if value:
        from standardwebhooks import Webhook  # only where a secret is set: the CLI and most processes have none

        try:
            Webhook(value)
        except Exception:
            raise ValueError("must be whsec_ followed by base64, as Standard Webhooks secrets are") from None
    return value


#: A Standard Webhooks secret (`whsec_` + base64), for signing what we send or checking what we receive; empty: unset.
SigningSecret = Annotated[str, AfterValidator(_check_signing_secret)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    #: One node, or a cluster's nodes (see _amqp_nodes); held as Dramatiq reads a list: URLs joined by ";".
    rabbitmq_url: str = "amqp://guest:guest@localhost:5672/"
    #: classic (one node; priorities through x-max-priority) or quorum (a cluster: replicated queues, priorities
    #: through lanes): the type of every queue the service declares (service/rabbit/queue_types.py).
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    redis_url: str = ""
    redis_host: str = "localhost"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: str = ""
    redis_db: int = Field(0, ge=0)
    #: Redis through Sentinel (service/store/connection.py): the Sentinels as host:port,... and the primary's name
    #: they know it by. REDIS_URL (or the four above) then gives only the password, the database and TLS.
    redis_sentinels: Annotated[list[str], NoDecode, AfterValidator(_check_sentinels)] = []
    redis_sentinel_master: str = ""
    #: A job's message is acknowledged only once this many replicas have its final outcome (Redis WAIT, at most
    #: REDIS_WAIT_TIMEOUT_MS a try; short, the outcome is written again as through an outage and the message waits).
    #: Unset: 1 with REDIS_SENTINELS, else 0 (off). See the README's "Redis with Sentinel".
    redis_wait_replicas: int | None = Field(None, ge=0, le=100)
    #: At most 4 s: under the client's 5 s socket timeout (service/store/connection.py).
    redis_wait_timeout_ms: int = Field(500, ge=1, le=4000)

    job_concurrency: int = Field(5, ge=1, le=1000)
    job_max_retries: int = Field(3, ge=0, le=1000)
    job_retry_delays_ms: Annotated[list[int], NoDecode, AfterValidator(_check_delays)] = [1000, 5000, 30000]
    job_time_limit_ms: int = Field(300_000, ge=1)
    job_retention_completed_s: int = Field(86_400, ge=1)
    job_retention_completed_count: int = Field(1000, ge=1)
    job_retention_failed_s: int = Field(604_800, ge=1)
    #: Not in the seed: without it a burst of failures would grow Redis without bound for 7 days.
    job_retention_failed_count: int = Field(10_000, ge=1)
    #: A running job's lease lapses this long after its worker stopped renewing it (cleanup_jobs then requeues it).
    job_lease_ms: int = Field(30_000, ge=1000, le=3_600_000)

    #: A worker retries a job's store write through a Redis outage for this long; then the job does not start (its
    #: message goes back to RabbitMQ) or its outcome is written again in the background (its message waits).
    job_store_retry_s: float = Field(60.0, gt=0)

    #: A job's own log lines (service/worker/job_log_capture.py): how many are kept per job (0 turns capture off), how
    #: long each may be, and how often a worker writes what its jobs logged (also as each job ends).
    job_log_lines: int = Field(200, ge=0, le=10_000)
    job_log_line_chars: int = Field(2000, ge=100, le=100_000)
    job_log_flush_ms: int = Field(150, ge=10, le=10_000)

    #: On SIGTERM a worker finishes its jobs for this long, then interrupts the rest (they run again elsewhere).
    worker_shutdown_timeout_s: float = Field(30.0, ge=0)
    #: Each `dramatiq` command serves its workers' Prometheus metrics here; 0 turns that off.
    worker_metrics_port: int = Field(9191, ge=0, le=65535)

    #: Lifecycle events kept in the Redis stream `jobs:events` (approximately: Redis trims whole stream nodes).
    events_stream_maxlen: int = Field(100_000, ge=1000, le=100_000_000)
    #: When set (e.g. jobs.events), the scheduler process also exports every event to this RabbitMQ topic exchange.
    events_exchange: str = ""

    api_token: str = ""
    #: Must be true for a web process to serve without API_TOKEN on an address other than loopback.
    api_open: bool = False
    #: `Host` values the web process answers; any other gets 400 (a DNS-rebinding page sends its own domain).
    allowed_hosts: Annotated[list[str], NoDecode, AfterValidator(_bracket_hosts)] = ["localhost", "127.0.0.1", "[::1]"]
    max_payload_bytes: int = Field(262_144, ge=1)
    #: A job whose result is larger (as JSON) fails instead: results are kept in Redis and sent to every reader.
    max_result_bytes: int = Field(1_048_576, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    #: Cron (service/worker/ticks.py): how late a missed tick may still run, and the zone cron expressions are
    #: read in.
    schedule_misfire_grace_s: int = Field(300, ge=0)
    schedule_timezone: str = "UTC"

    #: OpenTelemetry's standard variables (service/tracing.py): traces are off unless an exporter or an endpoint is
    #: set. The OTLP exporter reads its other OTEL_EXPORTER_OTLP_* variables (headers, timeouts) itself.
    otel_sdk_disabled: bool = False
    otel_traces_exporter: Literal["", "none", "otlp", "console", "jsonl"] = ""
    otel_exporter_otlp_endpoint: str = ""
    otel_exporter_otlp_traces_endpoint: str = ""
    otel_service_name: str = ""
    #: Test support: with OTEL_TRACES_EXPORTER=jsonl, finished spans are appended to this file as JSON lines.
    traces_file: str = ""

    #: GET /metrics shows waiting and running jobs for this many keys, the busiest; the rest are summed under
    #: key="(other)", so a tenant count of any size stays a bounded number of series (service/ops/key_metrics.py).
    metrics_top_keys: int = Field(20, ge=0, le=1000)

    #: Fair dispatch across keys (service/rabbit/queue_types.py): the queues (names, `*` patterns) whose keyed jobs
    #: go to key lanes that workers take turns on, and how many lanes each has. Empty: off.
    fair_queues: Annotated[list[str], NoDecode] = []
    fair_lanes: int = Field(8, ge=1, le=64)

    #: Per actor, limit options that replace the declared ones (service/domain/limits.py), as JSON:
    #: {"deliver_webhook": {"key_concurrency": 4}}. Checked at start, each entry naming its actor and option.
    job_limits: Annotated[dict[str, Any], NoDecode, BeforeValidator(_json_object), AfterValidator(check_overrides)] = {}

    @property
    def tracing_exporter(self) -> str | None:
        """Which exporter the traces go to, or None: tracing off, no OpenTelemetry SDK in this process."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return None
        if self.otel_traces_exporter:
            return self.otel_traces_exporter
        return "otlp" if self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint else None

    @property
    def redis_replicas_to_wait(self) -> int:
        """REDIS_WAIT_REPLICAS, or when unset 1 through Sentinel (a primary with replicas) and 0 otherwise."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @field_validator("job_retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        return _parse_delays(value)

    @field_validator("allowed_hosts", "redis_sentinels", "fair_queues", mode="before")
    @classmethod
    def _split_allowed_hosts(cls, value: object) -> object:
        return _split_hosts(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("otel_traces_exporter", mode="before")
    @classmethod
    def _lower_exporter(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("schedule_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Paris") from None
        return value

    @field_validator("rabbitmq_url")
    @classmethod
    def _check_amqp(cls, value: str) -> str:
        return ";".join(_amqp_nodes(value))

    @field_validator("rabbitmq_queue_type", mode="before")
    @classmethod
    def _lower_queue_type(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
                raise ValueError("must look like redis://host:6379/0")
        return value

    @model_validator(mode="after")
    def _build_redis_url(self) -> Settings:
        # REDIS_URL wins; otherwise the seed's four variables make it up.
        if not self.redis_url:
            auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
            self.redis_url = f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"
        return self

    @model_validator(mode="after")
    def _check_sentinel_master(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER must name the primary that REDIS_SENTINELS monitor")
        return self

    @model_validator(mode="after")
    def _check_traces_file(self) -> Settings:
        if self.tracing_exporter == "jsonl" and not self.traces_file:
            raise ValueError("TRACES_FILE must name a file when OTEL_TRACES_EXPORTER=jsonl")
        return self


class ReportSettings(BaseSettings):
    """The report job's variables. Here rather than beside the job's kit (service/kits/reports.py) because the web
    process serves the files it writes (GET /reports/{name}): both read REPORTS_DIR."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    reports_dir: Path = Path("reports")
    #: Who gets each report by email; empty: nobody.
    report_recipients: Annotated[list[EmailStr], NoDecode] = []
    #: Where people reach the API, for the download link in the email.
    public_base_url: str = "http://localhost:8000"

    @field_validator("report_recipients", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("reports_dir")
    @classmethod
    def _usable(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a directory")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def describe_error(error: ValidationError) -> str:
    """One line naming each bad variable and what is wrong with it."""
    problems = []
    for item in error.errors():
        name = "_".join(str(p) for p in item["loc"] if isinstance(p, str)).upper() or "settings"
        problems.append(f"{name}: {item['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def exit_on_invalid(load: type[SettingsT]) -> SettingsT:
    """Build a settings class, or stop the process with one line and exit status 2. Its secrets (by name, and
    passwords inside URLs) are registered with the log formatters, so no log line of this process shows them."""
    try:
        loaded = load()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise SystemExit(2) from None
    for secret in secrets_of(loaded):
        logs.register_secret(secret)
    return loaded


#: A setting whose name matches holds a secret: tokens, passwords, signing secrets, keys.
_SECRET_NAME = re.compile(r"password|secret|token|(^|_)key$", re.IGNORECASE)


def secrets_of(settings: BaseSettings) -> list[str]:
    found: list[str] = []
    for name, value in settings:
        if not isinstance(value, str) or not value:
            continue
        if _SECRET_NAME.search(name):
            found.append(value)
            if value.startswith("whsec_"):
                found.append(value.removeprefix("whsec_"))  # the part that is the actual key
        elif "://" in value:
            for url in value.split(";"):
                password = urlsplit(url).password
                if password:
                    found += [password, unquote(password)]
    return found


def public_view(settings: BaseSettings) -> dict[str, object]:
    """The settings as they may be logged: secrets shown as "***" (or "" when unset), passwords cut from URLs."""
    view: dict[str, object] = {}
    for name, value in settings:
        if isinstance(value, str) and _SECRET_NAME.search(name):
            view[name] = "***" if value else ""
        elif isinstance(value, str):
            view[name] = logs.redact(value)
        else:
            view[name] = value
    return view


_loaded: dict[type[BaseSettings], BaseSettings] = {}


def load_settings(kind: type[SettingsT]) -> SettingsT:
    """The one way a process reads a settings class (this module's, a kit's, a route's): built from the environment
    the first time it is asked for, then the same object. A malformed variable stops the process (exit_on_invalid),
    and the secrets are registered with the log formatters as the class is loaded, so no module registers its own."""
    try:
        return cast(SettingsT, _loaded[kind])
    except KeyError:
        # Two threads loading at once build it twice; both get the first one stored.
        return cast(SettingsT, _loaded.setdefault(kind, exit_on_invalid(kind)))


def forget_settings(kind: type[BaseSettings]) -> None:
    """Read the class from the environment again at its next load (tests that change a variable)."""
    _loaded.pop(kind, None)


def get_settings() -> Settings:
    """The contract's variables (`Settings`), loaded once."""
    return load_settings(Settings)
