"""A first sync of a few hundred people with templated group roles, end to end against a
real slapd and a real PostgreSQL, in a brownfield cluster: bulk GRANT statements and
one ledger statement per member and round trip must still leave exactly the roles,
memberships, membership ledgers and audit records the plan names (issue 19)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from psycopg import sql

from provisioner.core.governance.audit import EventKind
from provisioner.core.values.plan import ChangeKind, Plan
from provisioner.engine.connections import Targets
from provisioner.engine.execute import execute
from provisioner.engine.installation import open_store
from provisioner.engine.run import apply_run
from provisioner.errors import VerificationFailed
from provisioner.targets import pg_apply, pg_bulk
from tests.support import pg
from tests.support.e2e import Setup, make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "everyone"
description = "every active person reads reports"
grant = ["{p}readers", "{p}dept_{{department}}"]
when = {{ attr = "department", present = true }}

[[rule]]
id = "ldap-groups"
description = "a NOLOGIN role per directory group"
grant = ["{p}grp_{{group}}"]
groups = {{ under = "{groups}" }}
when = {{ attr = "department", present = true }}
"""
DEPARTMENTS = ("Trading", "Risk", "Operations")
MARK = "provisioner:managed "


def _directory(ldap_ou: LdapOu, users: int, groups: int) -> dict[str, set[str]]:
    """``users`` people (a few terminated) in ``groups`` groups of Zipf-like sizes, some
    people in many groups; returns uid -> group cns of the active people."""
    rng = random.Random(19)
    uids = [f"u{i:03d}" for i in range(users)]
    terminated = set(uids[::37])
    ldap_ou.add_users({
        uid: person(DEPARTMENTS[i % 3], status="terminated" if uid in terminated else "active")
        for i, uid in enumerate(uids)
    })
    wanted: dict[str, set[str]] = {uid: set() for uid in uids if uid not in terminated}
    for g in range(groups):
        cn = f"team{g:02d}"
        members = rng.sample(uids, max(1, users // (g + 2)))
        members += [uid for uid in uids[:12] if uid not in members]  # 12 people in every group
        ldap_ou.add_group(cn, [ldap_ou.user_dn(uid) for uid in members])
        for uid in members:
            if uid in wanted:
                wanted[uid].add(cn)
    return wanted


def _comments(prefix: str) -> dict[str, str | None]:
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname LIKE %s",
            (prefix + "%",),
        ).fetchall()
    return {name: text for name, text in rows}


def _apply(setup: Setup) -> tuple[Plan, int, list[dict[str, object]]]:
    """One apply as the CLI runs it: the plan, the statements sent, the run's audit records."""
    cfg = setup.config()
    store = open_store(cfg)
    try:
        with Targets(cfg) as targets:
            ctx = setup.ctx(cfg, store)
            plan = apply_run(cfg, ctx, targets)
            statements = int(getattr(targets.get("pg"), "statements_executed", 0))
        records = [r.content for r in store.audit.iter_rows() if r.content.get("run_id") == ctx.run_id]
    finally:
        store.close()
    return plan, statements, records


def test_a_bulk_first_sync_leaves_exact_roles_memberships_ledgers_and_audit(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    # brownfield: a DBA's group role granted by hand to a DBA's login, a role named like a person
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}grp_team03")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_alice")))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}handmade")))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}u005")))  # the DBA made it
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}grp_team03"), sql.Identifier(f"{p}dba_alice")))
    wanted = _directory(ldap_ou, 300, 16)
    rules = RULES.replace("{groups}", ldap_ou.groups)
    # small transactions too: a member's changes are never split, ledgers stay per round trip
    setup = make_setup(tmp_path, ldap_ou.config(), p, rules=rules)
    setup.path.write_text(setup.path.read_text().replace("[safety]", "[safety]\nmax_changes_per_transaction = 700"))

    plan, statements, records = _apply(setup)

    people = {uid for uid in wanted if uid != "u005"}  # u005's name is a DBA's role: refused, reported
    expected = {
        f"{p}{uid}": {f"{p}readers", f"{p}dept_{DEPARTMENTS[int(uid[1:]) % 3].lower()}", *(f"{p}grp_{g}" for g in gs)}
        for uid, gs in wanted.items()
        if uid in people
    }
    got = memberships(p)
    assert {r: g for r, g in got.items() if r in expected} == expected
    assert got[f"{p}dba_alice"] == {f"{p}grp_team03"}, "the hand grant stays"
    assert f"{p}u005" not in got
    comments = _comments(p)
    groups = {g for gs in expected.values() for g in gs}
    assert set(comments) == {*expected, *groups, f"{p}dba_alice", f"{p}handmade", f"{p}u005", f"{p}svc"}
    for role, granted in expected.items():
        text = comments[role] or ""
        assert text.startswith(MARK), role
        marker = json.loads(text[len(MARK):])
        assert marker["kind"] == "user" and sorted(marker["granted"]) == sorted(granted), role
    for role in (f"{p}grp_team03", f"{p}dba_alice", f"{p}handmade", f"{p}u005"):
        assert comments[role] is None, f"{role} is a DBA's: never marked"
    for group in groups - {f"{p}grp_team03"}:
        assert (comments[group] or "").startswith(MARK), group

    # one audit record per change, with the change's detail
    applied = [r for r in records if r["kind"] == EventKind.CHANGE_APPLIED.value]
    assert len(applied) == len(plan.changes)
    assert sorted(json.dumps(r["change"], sort_keys=True) for r in applied) == sorted(
        json.dumps(c.to_json(), sort_keys=True) for c in plan.changes
    )
    grants = [c for c in plan.changes if c.kind is ChangeKind.GRANT_MEMBERSHIP]
    assert len(grants) == sum(len(g) for g in expected.values())
    # bulk: far fewer statements than membership changes (one ledger per member and round trip)
    assert statements < len(grants), (statements, len(grants))

    again = setup.plan()
    assert not again.has_changes, [c.describe() for c in again.changes]


def test_verify_catches_a_member_a_bulk_statement_left_out(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merged GRANT that silently misses one member (here: made to) is caught by the
    verification after apply, not recorded as done."""
    p = role_prefix
    _directory(ldap_ou, 60, 4)
    setup = make_setup(tmp_path, ldap_ou.config(), p, rules=RULES.replace("{groups}", ldap_ou.groups))
    original = pg_bulk._statement

    def lossy(key: tuple[str, str], roles: list[str]) -> sql.Composable:
        if key == ("GRANT", f"{p}grp_team01") and len(roles) > 1:
            roles = roles[1:]
        return original(key, roles)

    monkeypatch.setattr(pg_bulk, "_statement", lossy)
    with pytest.raises(VerificationFailed, match="grp_team01"):
        setup.apply()


def test_the_cyclic_gc_waits_while_executing_and_comes_back(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from provisioner.engine import run

    seen: list[bool] = []
    original = execute

    def spying(*args: object, **kw: object) -> None:
        seen.append(gc.isenabled())
        original(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "execute", spying)
    _directory(ldap_ou, 20, 2)
    setup = make_setup(tmp_path, ldap_ou.config(), role_prefix, rules=RULES.replace("{groups}", ldap_ou.groups))
    assert gc.isenabled()
    plan = setup.apply()
    assert plan.changes and seen == [False] and gc.isenabled()


def test_a_joiner_s_ledger_is_written_once_in_its_creation_marker(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ``COMMENT ON ROLE`` per new person on a first sync (issue 19: the joiner's
    membership ledger rides in its creation marker), however many groups and round trips;
    the ledger read back is still exactly the memberships granted."""
    p = role_prefix
    wanted = _directory(ldap_ou, 120, 12)
    setup = make_setup(tmp_path, ldap_ou.config(), p, rules=RULES.replace("{groups}", ldap_ou.groups))
    setup.path.write_text(setup.path.read_text().replace("[safety]", "[safety]\nmax_changes_per_transaction = 150"))
    sent: list[str] = []
    original = pg_apply.BatchRunner._execute

    def spy(self: pg_apply.BatchRunner, query: sql.SQL | bytes) -> None:
        sent.append(query.decode() if isinstance(query, bytes) else query.as_string(self.conn))
        original(self, query)

    monkeypatch.setattr(pg_apply.BatchRunner, "_execute", spy)
    _apply(setup)

    commented: dict[str, int] = {}
    for text in sent:
        for statement in text.split("; "):
            if statement.startswith("COMMENT ON ROLE "):
                role = statement[len("COMMENT ON ROLE "):].split(" IS ", 1)[0].strip('"')
                commented[role] = commented.get(role, 0) + 1
    people = {f"{p}{uid}" for uid in wanted}
    assert {r: n for r, n in commented.items() if r in people} == dict.fromkeys(people, 1)
    comments = _comments(p)
    for uid, groups in wanted.items():
        marker = json.loads((comments[f"{p}{uid}"] or "")[len(MARK):])
        dept = DEPARTMENTS[int(uid[1:]) % 3].lower()
        assert sorted(marker["granted"]) == sorted({f"{p}readers", f"{p}dept_{dept}", *(f"{p}grp_{g}" for g in groups)})
    assert memberships(p)[f"{p}u001"] >= {f"{p}readers"}
