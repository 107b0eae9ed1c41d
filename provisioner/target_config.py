"""Target configuration models (``[[targets]]``), re-exported by :mod:`provisioner.config`.

Every target type shares :class:`TargetBase` (name, protected roles, drift
policy, break-glass roles), which is all the pipeline reads of a target's
configuration; the rest belongs to the adapter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from provisioner.secrets import SecretRef


def _to_secret(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    return SecretRef(value)


Secret = Annotated[
    SecretRef,
    BeforeValidator(_to_secret),
    PlainSerializer(lambda s: s.ref, return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^(env|file|credential):.+"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class TargetBase(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    protected_roles: list[str] = []
    drift: Literal["report", "revoke"] = "report"
    """What to do with memberships granted by hand to managed roles."""
    drift_overrides: dict[str, Literal["report", "revoke"]] = {}
    break_glass: list[str] = []
    """Emergency roles of this target, in addition to ``lifecycle.break_glass``."""
    connect_timeout: int = Field(10, ge=1)
    lock_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds any statement of the provisioner waits for a lock (a DBA's open transaction)
    before it fails; the change is then reported and retried by the next run (docs/lifecycle.md)."""
    statement_timeout: float = Field(300.0, gt=0, le=86400)
    """Seconds any one statement of the provisioner may run."""
    allow_superuser: bool = False
    """Log in as a superuser anyway (refused by default: use the account of
    deploy/least-privilege-postgresql.sql or deploy/least-privilege-mysql.sql)."""

    @property
    def privilege_owners(self) -> tuple[str, ...]:
        """Roles whose future objects wildcard privilege grants cover (PostgreSQL only)."""
        return ()


class PostgresTargetConfig(TargetBase):
    type: Literal["postgresql"]
    dsn: str | None = None
    """libpq connection string without the password (``host=... user=... dbname=...``)."""
    password: Secret | None = None
    embedded: bool = False
    """Start an embedded PostgreSQL (pgserver) in ``data_dir`` instead of ``dsn``."""
    data_dir: str = ".provisioner/pgdata"
    databases: list[str] = []
    """Databases where a dropped role's objects are reassigned; empty: every database that allows connections."""
    manage_privileges: bool = False
    """Own catalog roles' privileges in ``databases`` (empty: the dsn's); docs/privileges.md."""
    default_privileges_for: list[str] = []
    """Roles whose future objects wildcard grants cover; empty: each schema's owner."""

    @property
    def privilege_owners(self) -> tuple[str, ...]:
        return tuple(self.default_privileges_for)


class MysqlTargetConfig(TargetBase):
    """MariaDB 10.4+ / MySQL 8 (docs/mysql.md)."""

    type: Literal["mysql"]
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    user: str = "provisioner"
    password: Secret | None = None
    database: str | None = None
    """Database to connect to (none needed)."""
    unix_socket: str | None = None
    account_host: str = "%"
    """Host part of every account the provisioner creates: role name ``alice`` is ``'alice'@'%'``."""
    auth_plugin: str = "mysql_native_password"
    """Plugin of created accounts (``pam``, ``gssapi`` for SSO); see auth_string."""
    auth_string: str | None = "invalid"
    """``USING`` value for auth_plugin; the default hash ``invalid`` matches no password."""
    meta_database: str = Field("provisioner_meta", pattern=r"^[A-Za-z0-9_$]+$")
    """Database of the ownership-marker table ``managed_roles``."""
    manage_privileges: bool = False
    """MariaDB: own catalog roles' object privileges, a PostgreSQL schema being a MariaDB
    database (docs/mysql.md, "Object privileges"); needs SELECT on mysql.db, tables_priv,
    columns_priv, procs_priv and the privileges to grant WITH GRANT OPTION."""
    manage_default_role: bool = False
    """MariaDB: set each managed user's DEFAULT ROLE (its only managed role; docs/mysql.md).
    Needs ``UPDATE ON mysql.*`` for the provisioner's account, hence off by default."""


class MemoryTargetConfig(TargetBase):
    """A target that lives in the provisioner's process (provisioner/targets/memory.py):
    tests and demos.  It starts empty in every run; nothing persists."""

    type: Literal["memory"]
    flavor: Literal["postgresql", "mariadb"] = "postgresql"
    """Whose capabilities and statement order it follows."""
    session_role: str = "provisioner"
    """The provisioner's own role in the in-memory catalog."""
    manage_default_role: bool = False
    """With ``flavor = "mariadb"``: read and plan default roles, as the MariaDB target does."""


TargetConfig = Annotated[
    PostgresTargetConfig | MysqlTargetConfig | MemoryTargetConfig, Field(discriminator="type")
]
