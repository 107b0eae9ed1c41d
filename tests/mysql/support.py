"""End-to-end setups for the MariaDB target: an LDIF directory, rules, and a
config whose only target is MariaDB reached as the least-privilege account."""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.config import write_config
from tests.support.e2e import RELAXED_SAFETY, Setup
from tests.support.mysql import HOST, PORT, Login

RULES = """
[[rule]]
id = "traders"
description = "traders trade"
grant = ["{p}trader", "{p}reader"]
when = {{ attr = "department", equals = "Trading" }}

[[rule]]
id = "operations"
description = "operations settle"
grant = ["{p}ops", "{p}reader"]
when = {{ attr = "department", equals = "Operations" }}

[[rule]]
id = "foreign"
description = "a role created by hand, not by the provisioner"
grant = ["{p}foreign"]
when = {{ attr = "title", equals = "Auditor" }}

[[rule]]
id = "odd"
description = "a role name with quotes, backticks and a semicolon"
grant = ["{p}odd `desk`'; DROP USER root; --"]
when = {{ attr = "title", equals = "Odd Desk" }}
"""


@dataclass(frozen=True)
class Person:
    uid: str
    department: str
    title: str = "Analyst"
    status: str = "active"
    leave_date: str | None = None
    stable_id: str = ""

    def ldif(self) -> str:
        sid = self.stable_id or str(uuid.uuid5(uuid.NAMESPACE_OID, self.uid))
        lines = [
            f"dn: uid={self.uid},ou=people,dc=example,dc=org",
            "objectClass: inetOrgPerson",
            "objectClass: hrPerson",
            f"uid: {self.uid}",
            f"cn: {self.uid}",
            f"sn: {self.uid}",
            f"departmentNumber: {self.department}",
            f"title: {self.title}",
            "employeeType: employee",
            f"hrStatus: {self.status}",
            "hrHireDate: 2020-01-01",
            f"entryUUID: {sid}",
        ]
        if self.leave_date:
            lines.append(f"hrLeaveDate: {self.leave_date}")
        return "\n".join(lines)


HEADER = """dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people
"""


@dataclass
class MysqlSetup:
    setup: Setup
    ldif: Path
    prefix: str

    def people(self, *people: Person) -> None:
        self.ldif.write_text(HEADER + "\n" + "\n\n".join(p.ldif() for p in people) + "\n")

    def role(self, uid: str) -> str:
        return f"{self.prefix}{uid}"


def write_mysql_config(
    tmp_path: Path,
    prefix: str,
    login: Login,
    *,
    source: str,
    protected: list[str] | None,
    extra: str,
    target_extra: str = "",
) -> Path:
    """The config of a MariaDB test target fed by ``directory.ldif`` in ``tmp_path``."""
    target = {
        "name": f"{prefix}maria",
        "type": "mysql",
        "host": HOST,
        "port": PORT,
        "user": login.user,
        "password": f"file:{login.password_file}",
        "meta_database": login.meta_database,
        "protected_roles": protected or [],
        **tomllib.loads(target_extra),
    }
    path = write_config(
        tmp_path / "config.toml",
        sources=[{"name": f"{prefix}{source}", "type": "ldif", "path": "directory.ldif"}],
        targets=[target],
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        naming={"prefix": prefix, "max_bytes": 63},
        extra=extra,
    )
    return path


def make_mysql_setup(
    tmp_path: Path, prefix: str, login: Login, *, protected: list[str] | None = None, extra: str = RELAXED_SAFETY
) -> MysqlSetup:
    (tmp_path / "mappings" / "rules").mkdir(parents=True)
    (tmp_path / "mappings" / "rules" / "r.toml").write_text(RULES.format(p=prefix))
    ldif = tmp_path / "directory.ldif"
    ldif.write_text(HEADER)
    path = write_mysql_config(tmp_path, prefix, login, source="ldif", protected=protected, extra=extra)
    return MysqlSetup(Setup(path, prefix, login.user, ""), ldif, prefix)
