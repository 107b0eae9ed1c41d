"""The shipped role catalog (``mappings/``) and sample directory on MariaDB.

MariaDB roles are server-global and tests share one server: every catalog
role name is given the test's unique prefix (the same files, renamed), users
get it through ``[naming] prefix``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.mysql.support import MysqlSetup, write_mysql_config
from tests.support.e2e import RELAXED_SAFETY, Setup
from tests.support.mysql import Login, account, admin_connect, ident, q

ROOT = Path(__file__).resolve().parents[2]
CATALOG_ROLES = (
    "trade_reader",
    "trade_executor",
    "trade_approver",
    "ops_settlement",
    "compliance_reader",
    "risk_analyst",
    "dba_tools",
    "dept_",
)
_NAME = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(CATALOG_ROLES) + r")")


def prefixed(text: str, prefix: str) -> str:
    """``text`` with every catalog role name carrying ``prefix``."""
    return _NAME.sub(lambda m: prefix + m.group(1), text)


def copy_catalog(dest: Path, prefix: str) -> None:
    for folder in ("roles", "rules", "sod", "exceptions"):
        (dest / folder).mkdir(parents=True)
        for path in sorted((ROOT / "mappings" / folder).glob("*.toml")):
            (dest / folder / path.name).write_text(prefixed(path.read_text(), prefix))


def make_catalog_setup(
    tmp_path: Path, prefix: str, login: Login, *, extra: str = RELAXED_SAFETY, privileges: bool = False
) -> MysqlSetup:
    """``privileges``: the catalog's object privileges too -- its schemas renamed with the
    prefix, examples/trading-schema-mariadb.sql loaded under those names, the provisioner's
    account given them WITH GRANT OPTION (docs/mysql.md), ``manage_privileges = true``."""
    copy_catalog(tmp_path / "mappings", prefix)
    if privileges:
        for path in [*(tmp_path / "mappings").glob("roles/*.toml"), *(tmp_path / "mappings").glob("sod/*.toml")]:
            path.write_text(prefixed_schemas(path.read_text(), prefix))
        load_trading_schema(prefix, login)
    ldif = tmp_path / "directory.ldif"
    shutil.copy(ROOT / "examples" / "directory.ldif", ldif)
    target_extra = "manage_privileges = true" if privileges else ""
    path = write_mysql_config(
        tmp_path, prefix, login, source="northwind", protected=None, extra=extra, target_extra=target_extra
    )
    return MysqlSetup(Setup(path, prefix, login.user, ""), ldif, prefix)


SCHEMAS = ("trading", "risk", "reference")
_SCHEMA_KEY = re.compile(r'((?:schema|on)\s*=\s*")(' + "|".join(SCHEMAS) + r')\b')
_SQL_NAME = re.compile(r"\b(" + "|".join(SCHEMAS) + r")\b")


def prefixed_schemas(text: str, prefix: str) -> str:
    """Catalog and SoD text with every schema (``schema = "trading"``, ``on = "trading.orders"``)
    carrying ``prefix``: MariaDB databases are server-global and tests share one server."""
    return _SCHEMA_KEY.sub(lambda m: m.group(1) + prefix + m.group(2), text)


def load_trading_schema(prefix: str, login: Login) -> None:
    """examples/trading-schema-mariadb.sql with prefixed database names, and the provisioner's
    account allowed to grant on them (the deploy script's ``WITH GRANT OPTION`` line)."""
    sql = (ROOT / "examples" / "trading-schema-mariadb.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    with admin_connect() as conn:
        for statement in body.split(";\n"):
            if statement.strip():
                q(conn, _SQL_NAME.sub(lambda m: prefix + m.group(1), statement))
        for schema in SCHEMAS:
            db = ident((prefix + schema).replace("_", "\\_"))
            q(conn, f"GRANT ALL PRIVILEGES ON {db}.* TO {account(conn, login.user)} WITH GRANT OPTION")
