"""Property tests against the real PostgreSQL: random directories (LDIF) and
random starting target states made with real SQL (unmanaged namesakes,
protected roles, hand-granted drift).  Each example runs in its own role prefix.

* after apply, a second plan is empty;
* unmanaged and protected roles are never changed;
* a leaver never ends a run with more access than before.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from provisioner.config import LdifSourceConfig
from tests.lifecycle.support import RULES, access, more_access
from tests.support import pg
from tests.support.e2e import make_setup

EXAMPLES = 25
DEPTS = ["Trading", "Operations", "Legal"]
UIDS = ["ann", "bob", "cy", "dee", "eve"]

person_st = st.tuples(st.sampled_from(DEPTS), st.sampled_from(["active", "active", "terminated"]))
directory_st = st.dictionaries(st.sampled_from(UIDS), person_st, min_size=1, max_size=len(UIDS))


def ldif(people: dict[str, tuple[str, str]]) -> str:
    out = []
    for uid, (dept, status) in sorted(people.items()):
        out.append(
            f"dn: uid={uid},ou=people,dc=prop,dc=test\nobjectClass: inetOrgPerson\nobjectClass: hrPerson\n"
            f"uid: {uid}\ncn: {uid}\nsn: {uid}\nentryUUID: 00000000-0000-4000-8000-{UIDS.index(uid):012d}\n"
            f"departmentNumber: {dept}\nhrStatus: {status}\n"
        )
    return "\n".join(out)


def snapshot(prefix: str, names: list[str]) -> dict[str, tuple[object, ...]]:
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin, r.rolvaliduntil, shobj_description(r.oid, 'pg_authid'),"
            " array(SELECT g.rolname FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid"
            "       WHERE am.member = r.oid ORDER BY 1)"
            " FROM pg_roles r WHERE r.rolname = ANY(%s)",
            ([prefix + n for n in names],),
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first=directory_st,
    second=directory_st,
    unmanaged=st.lists(st.sampled_from(UIDS), unique=True, max_size=2),
    drift=st.lists(st.sampled_from(UIDS), unique=True, max_size=3),
)
def test_random_directories_and_states(
    first: dict[str, tuple[str, str]],
    second: dict[str, tuple[str, str]],
    unmanaged: list[str],
    drift: list[str],
) -> None:
    with pg.role_prefix_scope() as p, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        q = sql.Identifier
        with pg.admin_connect() as conn:  # a random starting state, by hand
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(q(f"{p}extra")))
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(q(f"{p}vip")))
            conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}extra"), q(f"{p}vip")))
            for uid in unmanaged:  # unmanaged namesakes of directory users
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(q(p + uid)))
                conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}extra"), q(p + uid)))
        source = tmp_path / "dir.ldif"
        source.write_text(ldif(first))
        cfg = LdifSourceConfig(type="ldif", name=f"{p}src", path=str(source))
        s = make_setup(tmp_path, cfg, p, rules=RULES, protected=[f"{p}vip"])
        s.apply()
        assert not s.plan().has_changes, "second plan after the first apply"

        with pg.admin_connect() as conn:  # drift: hand-granted memberships on managed roles
            managed = {r for r in access(p) if r[len(p) :] in first and r[len(p) :] not in unmanaged}
            for uid in drift:
                if p + uid in managed:
                    conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}extra"), q(p + uid)))
        untouchable = ["vip", "extra", *unmanaged]
        fixed = snapshot(p, untouchable)
        source.write_text(ldif(second))
        before = access(p)
        s.apply()
        after = access(p)
        assert not s.plan().has_changes, "second plan after apply"
        assert snapshot(p, untouchable) == fixed, "unmanaged or protected roles changed"
        leavers = [p + u for u in first if u not in unmanaged and (u not in second or second[u][1] == "terminated")]
        for role in leavers:
            assert not more_access(before.get(role), after.get(role)), f"leaver {role} gained access"
            assert after.get(role, (False, frozenset()))[0] is False
