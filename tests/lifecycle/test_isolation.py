"""Leavers are never held back (issue 14): one change PostgreSQL refuses is
isolated, reported with the database's error, and every other change -- the
leaver's NOLOGIN first of all -- commits in the same run.

Brownfield: the business roles exist before the provisioner runs (created by a
DBA), and a DBA has granted a superuser-owned role to the leaver by hand.
"""

from __future__ import annotations

from pathlib import Path

from psycopg import sql

from provisioner.core.values.plan import Change, ChangeKind, Plan, make_change
from provisioner.targets.postgres import PostgresTarget
from tests.lifecycle.support import access, edit_config, person, setup
from tests.support import pg
from tests.support.e2e import Setup
from tests.support.fixtures import LdapOu


def _brownfield(p: str) -> None:
    """Business roles created by a DBA before the provisioner's first run."""
    with pg.admin_connect() as conn:
        for name in ("trade_executor", "trade_reader", "ops_settlement"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + name)))


def _unprefixed(tmp_path: Path, ldap_ou: LdapOu, p: str) -> Setup:
    """Role name = uid (no naming prefix), so that a uid can be a reserved name."""
    s = setup(tmp_path, ldap_ou, p)
    edit_config(s, f'prefix = "{p}"', 'prefix = ""')
    return s


def test_target_isolates_refused_changes(pg_target: PostgresTarget, role_prefix: str) -> None:
    """At the target: the refused changes are returned with PostgreSQL's message;
    the others (before and after them, in the same batch) commit."""
    p = role_prefix
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(p + "bob")))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + "desk")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(p + "desk"), sql.Identifier(p + "bob")))

    def create(name: str) -> Change:
        return make_change(ChangeKind.CREATE_ROLE, name, (), login=True, role_kind="user")

    changes = [
        make_change(ChangeKind.ALTER_ROLE, p + "bob", (), login=False),
        create("pg_evil"),
        make_change(ChangeKind.REVOKE_MEMBERSHIP, p + "bob", (), group=p + "desk"),
        create("public"),
        create(p + "desk"),  # exists already
        create(p + "cy"),
    ]
    result = pg_target.apply(changes)
    refused = {f.change.role: f.error for f in result.failed}
    assert set(refused) == {"pg_evil", "public", p + "desk"}
    assert "reserved" in refused["pg_evil"]
    assert "reserved" in refused["public"]
    assert "already exists" in refused[p + "desk"]
    assert {c.role for c in result.applied} == {p + "bob", p + "cy"}
    now = access(p)
    assert now[p + "bob"] == (False, frozenset())
    assert now[p + "cy"][0] is True


def _notices(plan: Plan) -> dict[str, tuple[str, str, str]]:
    """role -> (level, code, message) of every notice that names a role."""
    return {n.role: (n.level.value, n.code, n.message) for t in plan.targets for n in t.notices if n.role}


def test_poisoned_records_never_hold_back_a_leaver(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """Finding 1: uids PostgreSQL cannot take (``public``, ``none``, ``pg_evil``,
    a business role's name) are refused at plan time with an error notice naming
    the identity; the leaver and the joiner of the same run are applied."""
    p = role_prefix
    _brownfield(p)
    ann = ldap_ou.add_user(p + "ann", **person("Trading"))
    ldap_ou.add_user(p + "bob", **person("Trading"))
    s = _unprefixed(tmp_path, ldap_ou, p)
    s.apply()
    assert access(p)[p + "ann"] == (True, frozenset({p + "trade_executor", p + "trade_reader"}))

    ldap_ou.modify(ann, hrStatus="terminated")
    for uid in ("public", "none", "pg_evil", p + "trade_executor"):
        ldap_ou.add_user(uid, **person("Operations"))
    ldap_ou.add_user(p + "cy", **person("Operations"))

    plan = s.apply()
    now = access(p)
    assert now[p + "ann"] == (False, frozenset()), "the leaver is disabled in the same run"
    assert now[p + "cy"] == (True, frozenset({p + "ops_settlement", p + "trade_reader"})), "the joiner too"
    assert now[p + "trade_executor"] == (False, frozenset()), "the business role is untouched"
    notices = _notices(plan)
    for uid in ("public", "none", "pg_evil"):
        level, code, message = notices[uid]
        assert (level, code) == ("error", "unusable_name")
        assert f"identity {uid!r}" in message and "reserved" in message
    level, code, message = notices[p + "trade_executor"]
    assert (level, code) == ("error", "unmanaged") and f"identity {p + 'trade_executor'!r}" in message
    assert not {c.role for c in plan.changes} & {"public", "none", "pg_evil", p + "trade_executor"}
    assert not s.plan().changes, "the next run has nothing left to try"


def test_hand_granted_superuser_role_never_holds_back_a_leaver(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """Finding 3: a DBA granted a superuser role to a trader by hand; the
    provisioner (CREATEROLE, not superuser) cannot revoke it.  The revoke is
    refused at plan time, naming the person; the NOLOGIN and every other revoke
    apply in the same run."""
    p = role_prefix
    _brownfield(p)
    ann = ldap_ou.add_user("ann", **person("Trading"))
    s = setup(tmp_path, ldap_ou, p)
    s.apply()
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER NOLOGIN").format(sql.Identifier(p + "dba_super")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(p + "dba_super"), sql.Identifier(p + "ann")))
    ldap_ou.modify(ann, hrStatus="terminated")
    plan = s.apply()
    assert access(p)[p + "ann"] == (False, frozenset({p + "dba_super"}))
    level, code, message = _notices(plan)[p + "ann"]
    assert (level, code) == ("error", "not_permitted")
    assert "ann" in message and p + "dba_super" in message and "superuser" in message


def test_a_namesake_created_after_the_plan_gets_nothing(pg_target: PostgresTarget, role_prefix: str) -> None:
    """A DBA creates a role with a joiner's name between plan and apply: the CREATE
    fails, and the joiner's grants are skipped -- never given to the DBA's role."""
    p = role_prefix
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + "desk")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(p + "late")))  # the namesake
    create = make_change(ChangeKind.CREATE_ROLE, p + "late", (), login=True, role_kind="user")
    grant = make_change(ChangeKind.GRANT_MEMBERSHIP, p + "late", (), group=p + "desk")
    other = make_change(ChangeKind.CREATE_ROLE, p + "other", (), login=True, role_kind="user")
    result = pg_target.apply([create, other, grant])
    assert [(f.change, f.error.startswith("skipped")) for f in result.failed] == [(create, False), (grant, True)]
    assert "already exists" in result.failed[0].error
    assert access(p)[p + "late"] == (True, frozenset()), "the DBA's role got nothing"
    assert list(result.applied) == [other]
