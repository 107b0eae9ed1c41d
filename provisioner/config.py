"""Configuration: one pydantic model, validated in one place.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError`
naming the file and the dotted key path of every problem.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from provisioner.errors import ConfigError
from provisioner.source_config import LDAP_FILTER_DEFAULTS as LDAP_FILTER_DEFAULTS
from provisioner.source_config import EntraSourceConfig as EntraSourceConfig
from provisioner.source_config import LdapSourceConfig as LdapSourceConfig
from provisioner.source_config import LdifSourceConfig as LdifSourceConfig
from provisioner.source_config import SourceConfig as SourceConfig
from provisioner.target_config import MemoryTargetConfig as MemoryTargetConfig
from provisioner.target_config import MysqlTargetConfig as MysqlTargetConfig
from provisioner.target_config import PostgresTargetConfig as PostgresTargetConfig
from provisioner.target_config import Secret, TargetConfig
from provisioner.transform_config import AttributeTransform as AttributeTransform


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class GeneralConfig(_Model):
    instance: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """This installation's name, written into every ownership marker: roles marked by another
    installation are foreign and never changed.  Unset: derived from the sources (``validate``
    shows it); set it explicitly when two installations share a database server."""
    service_identity: str = "provisioner"
    """Actor recorded in the audit trail for scheduled runs."""
    mappings: str = "mappings"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StateConfig(_Model):
    url: str = "sqlite:///provisioner-state.db"
    """SQLAlchemy URL of the state and audit store."""
    password: Secret | None = None


class NamingConfig(_Model):
    template: str = "{username}"
    prefix: str = ""
    max_bytes: int = Field(63, ge=8, le=63)
    charset: Literal["ascii", "unicode"] = "ascii"
    """ascii: every script transliterated to a-z 0-9 _; unicode: NFC lower-case letters and digits kept."""


class LifecycleConfig(_Model):
    terminated_statuses: list[str] = ["terminated", "inactive", "leaver", "retired"]
    vanish_after_runs: int = Field(1, ge=1)
    retention_days: int = Field(30, ge=1)
    drop_after_retention: bool = True
    reassign_owned_to: str | None = None
    """Heir of a dropped role's objects in every database; default: the provisioner's own role."""
    break_glass: list[str] = []
    """Emergency roles on every target: never changed, reported when used or granted outside the rules."""
    timezone: str = "UTC"
    """IANA zone of date-only hire and leave dates (``Europe/London``)."""
    leave_at: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    """HH:MM a date-only leave date takes effect in ``timezone``; default: the end of that day."""

    @model_validator(mode="after")
    def _check_zone(self) -> LifecycleConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone (such as 'Europe/London')") from None
        return self


class SafetyConfig(_Model):
    max_revocation_share: float = Field(0.2, ge=0, le=1)
    """Breaker, leavers: most managed identities of a target whose login one run may end or limit (share)."""
    max_revocations: int = Field(5000, ge=0)
    """Breaker, leavers: the same as a count; the smaller limit applies (docs/lifecycle.md)."""
    max_mover_share: float = Field(0.25, ge=0, le=1)
    """Breaker, movers: most managed identities one run may revoke memberships or privileges from (share)."""
    max_movers: int = Field(25000, ge=0)
    max_identity_drop: float = Field(0.2, ge=0, le=1)
    """Health gate: largest drop of a source's identity count against the last good read."""
    max_changes_per_transaction: int = Field(5000, ge=0)
    """Larger plans (a first sync of a big directory) are applied in several transactions,
    never splitting one role's changes; 0 = always one transaction per target."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    """``"15m"``, ``"30s"``, ``"2h"``, ``"1d"`` or a number of seconds -> seconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        try:
            return float(number) * (unit or 1)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration such as '30s', '15m', '2h'") from None
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


class JobConfig(_Model):
    """One scheduled daemon job: ``interval`` or ``cron`` (five fields), plus jitter."""

    enabled: bool = True
    interval: Duration | None = None
    cron: str | None = Field(None, pattern=r"^\S+( \S+){4}$")
    jitter: Duration = 0.0
    misfire_grace_time: Duration = 300.0

    @model_validator(mode="after")
    def _one_schedule(self) -> JobConfig:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("set exactly one of interval or cron")
        if self.interval is not None and self.interval <= 0:
            raise ValueError("interval must be positive")
        return self


class DaemonJobsConfig(_Model):
    reconcile: JobConfig = JobConfig(interval=900.0, jitter=30.0)
    source_sync: JobConfig | None = None
    review_reminder: JobConfig | None = None


def _loopback(value: str) -> str:
    import ipaddress

    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{host!r} is not a loopback address; the daemon listens on 127.0.0.1, ::1 or localhost only "
            "(put a reverse proxy in front to expose it)"
        )
    return value


class DaemonConfig(_Model):
    mode: Literal["plan", "apply"] = "plan"
    """Safe by default: the daemon applies only when this says "apply"."""
    listen: Annotated[str, AfterValidator(_loopback)] = "127.0.0.1:9465"
    trigger_token: Secret | None = None
    ha_lock: bool = True
    leader_retry: Annotated[float, BeforeValidator(_duration), Field(ge=0.5, le=60)] = 5.0
    """Seconds between leader-lock checks: a follower takes over this soon after the leader dies."""
    retry_max_delay: Duration = 600.0
    failure_alert_after: int = Field(3, ge=1)
    stuck_after: Duration = 1800.0
    """A run in progress for longer is stuck: /readyz 503, alert (docs/daemon.md)."""
    jobs: DaemonJobsConfig = DaemonJobsConfig()


class AuditConfig(_Model):
    """[audit] and [alerts]: see config.example.toml, docs/audit.md, docs/alerts.md."""

    signing_key: Secret | None = None
    recover_after: Duration = 600.0
    checkpoint_dir: str | None = None
    """Ship every checkpoint as a file to this directory (another volume, a WORM mount)."""
    checkpoint_syslog: str | None = None
    """Ship every checkpoint to syslog: ``/dev/log`` or ``host:port`` (UDP)."""
    checkpoint_webhook: Secret | None = None
    """Ship every checkpoint as JSON by HTTP POST to this URL (a SecretRef)."""
    checkpoint_max_age: Duration | None = None
    """``audit verify`` fails when the newest checkpoint is older than this."""
    reason_pattern: str = r"\S"
    """``apply --reason`` must match this regular expression (e.g. a ticket ``^(CHG|INC)[0-9]{6}\b``)."""

    @field_validator("reason_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class WebhookChannelConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: Secret
    """Incoming-webhook URL (Slack, Teams ...); a secret, since the URL is the credential."""


class EmailChannelConfig(_Model):
    host: str
    port: int = Field(587, ge=1, le=65535)
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None


class AlertsConfig(_Model):
    min_sensitivity: Literal["low", "medium", "high", "critical"] = "high"
    rapid_change_count: int = Field(5, ge=1)
    rapid_change_window: Duration = 3600.0
    failure_streak: int = Field(3, ge=1)
    dedup_window: Duration = 3600.0
    max_per_hour: int = Field(30, ge=1)
    """Per channel; critical alerts are never held back (the rest go into an hourly digest)."""
    timeout: float = Field(5.0, gt=0, le=60)
    retry_attempts: int = Field(3, ge=1, le=10)
    """Delivery attempts per alert and channel within one run; then it waits in the outbox for the next run."""
    retry_backoff: Duration = 1.0
    """First retry delay; doubled per attempt (capped at one hour between runs)."""
    webhooks: list[WebhookChannelConfig] = []
    email: EmailChannelConfig | None = None


class ReviewConfig(_Model):
    reviewer: Literal["manager", "owner"] = "manager"
    """Who reviews an item: the identity's manager (falling back to the role owner) or the role owner."""
    schedule: Literal["quarterly", "monthly", "yearly", "off"] = "quarterly"
    """How often the daemon's review_reminder job opens a campaign (2026-Q4, 2026-11, 2026)."""
    due_days: int = Field(30, ge=1, le=366)
    """A campaign is due this many days after it starts; open items are escalated to the role owner after."""
    exclusion_days: int = Field(180, ge=1, le=3660)
    """How long a revoke of rule-based access stays in force (an exclusion the rules honour)."""
    owners: list[str] = []
    """Directory usernames who may sign a campaign off (the campaign owners); none: nobody can."""
    listen: str = "127.0.0.1:8470"
    """``review serve`` and the daemon: host:port; loopback by default (a TLS-terminating reverse proxy in front)."""
    serve: bool = False
    """The daemon also serves the reviewer page on ``listen``."""
    idle_timeout: float = Field(900.0, gt=0)
    """Seconds a reviewer's web session lives without a request."""
    secure_cookies: bool = True
    """Session cookies carry the Secure flag (set false only for plain-HTTP tests on loopback)."""
    trusted_header: str | None = None
    """For Entra: the header (e.g. ``X-Forwarded-User``) in which the reverse proxy passes the signed-in
    user; honoured only from ``trusted_proxies``.  Unset: sign-in by LDAP bind against the first LDAP source."""
    trusted_proxies: list[str] = ["127.0.0.1"]


class Config(_Model):
    provisioner: GeneralConfig = GeneralConfig()
    state: StateConfig = StateConfig()
    naming: NamingConfig = NamingConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    safety: SafetyConfig = SafetyConfig()
    sources: list[SourceConfig] = Field(min_length=1)
    targets: list[TargetConfig] = Field(min_length=1)
    daemon: DaemonConfig = DaemonConfig()
    audit: AuditConfig = AuditConfig()
    alerts: AlertsConfig = AlertsConfig()
    review: ReviewConfig = ReviewConfig()

    path: Path | None = Field(None, exclude=True)
    digest: str = Field("", exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def mappings_dir(self) -> Path:
        return self.resolve_path(self.provisioner.mappings)

    @property
    def instance(self) -> str:
        """``[provisioner] instance``, or a name derived from what the sources read (type,
        location and name of each), so two installations reading different directories
        never share one; changing a source's location changes a derived name."""
        if self.provisioner.instance:
            return self.provisioner.instance
        return derived_instance(self.sources)

    @property
    def instance_derived(self) -> bool:
        return not self.provisioner.instance


def derived_instance(sources: list[SourceConfig]) -> str:
    parts = []
    for src in sources:
        if isinstance(src, LdapSourceConfig):
            where = f"{src.url.lower().rstrip('/')}|{src.user_base.lower()}"
        elif isinstance(src, LdifSourceConfig):
            where = src.path
        else:
            where = f"{src.tenant_id.lower()}"
        parts.append(f"{src.type}|{src.name}|{where}")
    return "auto-" + hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:12]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("ldap", "ldif", "entra", "postgresql", "mysql") and out.endswith("]"):
            continue  # discriminator tag pydantic inserts
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_PATH_KEYS = ("path", "ca_file", "certificate_key_file", "data_dir", "mappings")


def _absolutize(data: Any, base: Path) -> Any:
    """Make relative file paths and ``file:`` secret references relative to the config file."""
    if isinstance(data, list):
        return [_absolutize(v, base) for v in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _PATH_KEYS and isinstance(value, str) and value and not Path(value).is_absolute():
            value = str((base / value).resolve())
        elif isinstance(value, str) and value.startswith("file:") and not Path(value[5:]).is_absolute():
            value = "file:" + str((base / value[5:]).resolve())
        out[key] = _absolutize(value, base)
    return out


def parse_config(data: dict[str, Any], path: Path) -> Config:
    data = _absolutize(data, path.parent)
    try:
        cfg = Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        lines = [f"{path}: {_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid configuration ({len(lines)} problem(s)):\n" + "\n".join(lines)) from None
    _check_unique(cfg, path)
    return cfg


def _check_unique(cfg: Config, path: Path) -> None:
    problems = []
    for kind, items in (("sources", cfg.sources), ("targets", cfg.targets)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(f"{path}: {kind}[{i}].name: duplicate name {item.name!r}")
            seen.add(item.name)
    for i, t in enumerate(cfg.targets):
        if isinstance(t, PostgresTargetConfig) and not t.embedded and not t.dsn:
            problems.append(f"{path}: targets[{i}]: set dsn, or embedded = true")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read configuration: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    cfg = parse_config(data, p.resolve())
    return cfg.model_copy(update={"digest": "sha256:" + hashlib.sha256(raw).hexdigest()})
