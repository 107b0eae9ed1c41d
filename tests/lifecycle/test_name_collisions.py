"""Role name collisions (two identities, one normalised name) against real PostgreSQL:
the name is held for the active contenders and the collision reported, but the managed
role's owner, when it leaves or vanishes, is disabled in that very run."""

from __future__ import annotations

import base64
from pathlib import Path

from provisioner.config import LdifSourceConfig
from provisioner.core.values.plan import Plan
from tests.lifecycle.support import RULES, access
from tests.support.e2e import Setup, make_setup

IDS = {"jose": 0, "José": 1, "jo.se": 2, "jo-se": 3, "JO.SE": 4}


def entry(uid: str, dept: str, status: str) -> str:
    dn = f"uid={uid},ou=people,dc=coll,dc=test"
    lines = [
        f"dn:: {base64.b64encode(dn.encode()).decode()}",
        "objectClass: inetOrgPerson",
        "objectClass: hrPerson",
        f"uid:: {base64.b64encode(uid.encode()).decode()}",
        f"cn: person {IDS[uid]}",
        "sn: person",
        f"entryUUID: 00000000-0000-4000-8000-{IDS[uid]:012d}",
        f"departmentNumber: {dept}",
        f"hrStatus: {status}",
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, people: dict[str, tuple[str, str]]) -> None:
    path.write_text("\n".join(entry(uid, *v) for uid, v in people.items()))


def problems(plan: Plan) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == "identity"]


def setup(tmp_path: Path, p: str) -> tuple[Setup, Path]:
    source = tmp_path / "people.ldif"
    write(source, {"jose": ("Trading", "active"), "jo.se": ("Operations", "active")})
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}src", path=str(source)), p, rules=RULES)
    s.apply()
    assert access(p)[f"{p}jose"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    assert access(p)[f"{p}jo_se"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    return s, source


def test_terminated_owner_of_a_colliding_name_is_disabled_the_same_run(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    s, source = setup(tmp_path, p)
    # jose leaves the day José (another person) joins: both normalise to "jose"
    write(source, {"jose": ("Trading", "terminated"), "José": ("Trading", "active"), "jo.se": ("Operations", "active")})
    plan = s.apply()
    assert any("collision" in m and repr(f"{p}jose") in m for m in problems(plan)), problems(plan)
    assert access(p)[f"{p}jose"] == (False, frozenset()), "a leaver keeps access while its name collides"
    assert access(p)[f"{p}jo_se"][0] is True
    assert not [c for c in s.plan().changes if c.role == f"{p}jose"]


def test_active_owner_is_held_and_vanished_owner_disabled(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    s, source = setup(tmp_path, p)
    # a newcomer whose name collides with an active owner: nobody's access changes, both reported
    write(source, {"jose": ("Trading", "active"), "jo.se": ("Operations", "active"), "jo-se": ("Trading", "active")})
    plan = s.apply()
    assert any("collision" in m and repr(f"{p}jo_se") in m for m in problems(plan)), problems(plan)
    assert not [c for c in plan.changes if c.role == f"{p}jo_se"]
    assert access(p)[f"{p}jo_se"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))

    # the owner leaves the directory while two others still collide on its name
    write(source, {"jose": ("Trading", "active"), "jo-se": ("Trading", "active"), "JO.SE": ("Operations", "active")})
    plan = s.apply()
    assert any("collision" in m and repr(f"{p}jo_se") in m for m in problems(plan)), problems(plan)
    assert access(p)[f"{p}jo_se"] == (False, frozenset()), "a vanished owner keeps access while its name collides"
    assert access(p)[f"{p}jose"][0] is True
