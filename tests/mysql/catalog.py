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
from tests.support.mysql import Login

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


def make_catalog_setup(tmp_path: Path, prefix: str, login: Login, *, extra: str = RELAXED_SAFETY) -> MysqlSetup:
    copy_catalog(tmp_path / "mappings", prefix)
    ldif = tmp_path / "directory.ldif"
    shutil.copy(ROOT / "examples" / "directory.ldif", ldif)
    path = write_mysql_config(tmp_path, prefix, login, source="northwind", protected=None, extra=extra)
    return MysqlSetup(Setup(path, prefix, login.user, ""), ldif, prefix)
