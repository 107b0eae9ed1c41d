"""What a target can express, declared by its adapter (a value, no I/O).

Planning asks these instead of probing adapter-specific facts: a change a
target cannot express is never planned; the plan carries a notice saying why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capabilities:
    dialect: str = "postgresql"
    """``postgresql`` or ``mariadb`` / ``mysql``: the words of the plan text (NOLOGIN vs ACCOUNT LOCK)."""
    transactional: bool = True
    """One apply commits or rolls back as a whole (MariaDB: every account statement commits)."""
    expiring_accounts: bool = True
    """The server refuses a login after VALID UNTIL (MariaDB: the leave timer disables it)."""
    object_privileges: bool = True
    """Catalog object privileges (schemas, tables, sequences, functions, columns) can be managed
    (MariaDB: translated grant by grant, core/privileges/dialect.py)."""
    object_privileges_why_not: str = ""
    """Why not, when ``object_privileges`` is False (shown in the plan)."""
    default_roles: bool = False
    """Accounts have a DEFAULT ROLE the provisioner can set (MariaDB)."""
    catalog_digest: bool = True
    """A cheap digest of the catalog lets an unchanged run short-circuit."""
    session_termination: bool = True
    """Open sessions of a leaver can be ended."""
    password_drift: bool = False
    """A password set by hand on a managed account is visible (``ActualRole``-level fact)."""


POSTGRESQL = Capabilities()

MYSQL_PRIVILEGES_WHY_NOT = (
    "object privileges are translated for MariaDB only (a PostgreSQL schema is a MariaDB database; "
    "core/privileges/dialect.py); MySQL 8's grant tables and roles differ and have no tests here; grant object "
    "privileges to these roles in MySQL by hand (provisioner manages their role hierarchy and memberships)"
)

MARIADB = Capabilities(
    dialect="mariadb",
    transactional=False,
    expiring_accounts=False,
    object_privileges=True,
    default_roles=True,
    catalog_digest=False,
    password_drift=True,
)

MYSQL = Capabilities(
    dialect="mysql",
    transactional=False,
    expiring_accounts=False,
    object_privileges=False,
    object_privileges_why_not=MYSQL_PRIVILEGES_WHY_NOT,
    catalog_digest=False,
)
