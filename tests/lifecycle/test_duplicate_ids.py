"""Two directory entries with one stable id (messy HR data: a rehire's new record beside the
old one, a stale contractor record) against real PostgreSQL.  Which entry a read returns
first is arbitrary, so neither decides: the person is treated as having left now, with an
error notice naming both entries, until the directory is fixed."""

from __future__ import annotations

from pathlib import Path

from provisioner.config import LdifSourceConfig
from provisioner.core.values.plan import Plan
from tests.lifecycle.support import RULES, access
from tests.support.e2e import make_setup

SAME = "00000000-0000-4000-8000-0000000000aa"


def entry(uid: str, dept: str, status: str, uuid: str) -> str:
    return (
        f"dn: uid={uid},ou=people,dc=dup,dc=test\nobjectClass: inetOrgPerson\nobjectClass: hrPerson\n"
        f"uid: {uid}\ncn: {uid}\nsn: {uid}\nentryUUID: {uuid}\ndepartmentNumber: {dept}\nhrStatus: {status}\n"
    )


def errors(plan: Plan) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == "identity"]


def test_entries_sharing_a_stable_id_fail_safe_whatever_their_order(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    source = tmp_path / "people.ldif"
    colleague = entry("ann", "Trading", "active", "00000000-0000-4000-8000-000000000001")
    source.write_text(entry("bob", "Trading", "active", SAME) + "\n" + colleague)
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}src", path=str(source)), p, rules=RULES)
    s.apply()
    assert access(p)[f"{p}bob"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))

    # bob is terminated; a stale active record with his id (another uid) comes first in the export
    for first, second in ((entry("robert", "Trading", "active", SAME), entry("bob", "Trading", "terminated", SAME)),
                          (entry("bob", "Trading", "terminated", SAME), entry("robert", "Trading", "active", SAME))):
        source.write_text(first + "\n" + second + "\n" + colleague)
        plan = s.apply()
        found = [m for m in errors(plan) if SAME in m]
        assert found and "uid=bob" in found[0] and "uid=robert" in found[0], errors(plan)
        after = access(p)
        held = {name: a for name, a in after.items() if name in (f"{p}bob", f"{p}robert")}
        assert held and all(a == (False, frozenset()) for a in held.values()), held
        assert after[f"{p}ann"][0] is True


def test_a_leavers_login_made_by_a_dba_is_an_error_every_plan(tmp_path: Path, role_prefix: str) -> None:
    """Brownfield: a DBA made the person's login by hand before provisioner (no marker).  It is
    never changed, but while the person has left and it can still log in, every plan says so
    as an error (an active person's is a warning, as before)."""
    from psycopg import sql

    from tests.support import pg

    p = role_prefix
    with pg.admin_connect() as conn:
        for uid in ("eve", "fay"):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}{uid}")))
    source = tmp_path / "people.ldif"
    source.write_text(
        entry("eve", "Trading", "terminated", "00000000-0000-4000-8000-0000000000e1")
        + "\n"
        + entry("fay", "Trading", "active", "00000000-0000-4000-8000-0000000000f1")
    )
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}src", path=str(source)), p, rules=RULES)
    for _ in range(2):
        plan = s.apply()
        levels = {n.role: n.level.value for t in plan.targets for n in t.notices if n.code == "unmanaged"}
        assert levels == {f"{p}eve": "error", f"{p}fay": "warning"}, levels
        message = next(n.message for t in plan.targets for n in t.notices if n.role == f"{p}eve")
        assert "left" in message and "can still log in" in message, message
        assert access(p)[f"{p}eve"][0] is True, "a role provisioner does not own is never changed"
