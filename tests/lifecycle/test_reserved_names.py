"""Role names a rule template makes from directory data, refused at plan time as a whole:
not the role's creation alone, but every membership in it too (E2E findings, session 14)."""

from __future__ import annotations

from pathlib import Path

from provisioner.core.values.plan import ChangeKind, NoticeLevel
from tests.lifecycle.support import access, person
from tests.support.e2e import make_setup
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "dept-role"
description = "a role named after the department (for row-level policies)"
grant = ["{{department}}"]
when = {{ attr = "title", equals = "Analyst" }}

[[rule]]
id = "desk"
description = "every analyst reads the desk"
grant = ["{p}desk"]
when = {{ attr = "title", equals = "Analyst" }}
"""


def test_a_reserved_name_from_directory_data_is_refused_with_its_grants(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """HR's department "All" templates to the reserved name ``all``: the plan refused creating
    the role ("not provisioned") but kept ``grant all to ann``, which PostgreSQL refuses at apply:
    the apply failed (exit 1, a change_failed alert) on every run. docs/plan-format.md and the
    README: reserved names are refused at plan time."""
    p = role_prefix
    ldap_ou.add_user("ann", **person("All"))
    s = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)
    plan = s.apply()  # no ApplyFailed: nothing in the plan the database must refuse
    assert ("unusable_name", "all") in {(n.code, n.role) for t in plan.targets for n in t.notices}
    assert "all" not in {str(c.param("group")) for c in plan.changes}, [c.describe() for c in plan.changes]
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}desk"}))


PROTECTED_RULES = """
[[rule]]
id = "vault"
description = "asks for a role the configuration protects"
grant = ["{p}vault", "{p}desk"]
when = {{ attr = "title", equals = "Analyst" }}
"""


def test_a_protected_name_that_does_not_exist_yet_is_not_created_and_granted(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """``protected_roles`` names a role the DBAs have not created on this target yet: the plan
    created it as a managed group and granted it to every analyst, although the README says
    provisioner never changes anything in ``protected_roles``, even when a rule asks (an
    existing protected role is refused with an error notice; a missing one must be too)."""
    p = role_prefix
    ldap_ou.add_user("ann", **person("Risk"))
    s = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=PROTECTED_RULES, protected=[f"{p}vault"])
    plan = s.apply()
    touched = {c.role for c in plan.changes} | {str(c.param("group")) for c in plan.changes}
    assert f"{p}vault" not in touched, [c.describe() for c in plan.changes]
    assert ("protected", f"{p}vault") in {(n.code, n.role) for t in plan.targets for n in t.notices}
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}desk"}))


LONG_RULES = """
[[rule]]
id = "dept-role"
description = "a role named after the department (for row-level policies)"
grant = ["{{department}}"]
when = {{ attr = "title", equals = "Analyst" }}

[[rule]]
id = "dept-prefixed"
description = "the same with a prefix"
grant = ["{p}d_{{department}}"]
when = {{ attr = "title", equals = "Analyst" }}
"""


def test_a_templated_role_name_too_long_is_reported_never_cut_into_another_desks_role(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """Two departments that differ only after the 63rd byte (Europe / Asia) template to ONE role:
    ``normalise`` cuts each value to 63 bytes, so the Asia analyst joins the Europe desk's role
    (row-level policies keyed on it then show her Europe's data). With a prefix the whole name is
    over 63 bytes and the grant is dropped without a word. Either way the plan must say so,
    naming the person and the attribute, and grant neither."""
    p = role_prefix
    desk = f"{p}fixed income structured credit desk global markets trading"
    ldap_ou.add_user("ann", **person(f"{desk} Europe"))
    ldap_ou.add_user("bob", **person(f"{desk} Asia"))
    s = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=LONG_RULES)
    plan = s.plan()
    granted = {(c.role, str(c.param("group"))) for c in plan.changes if c.kind is ChangeKind.GRANT_MEMBERSHIP}
    shared = {g for _, g in granted if g.startswith(p + "fixed")}
    assert not shared, f"one role for two departments: {sorted(granted)}"
    problems = [n.message for t in plan.targets for n in t.notices if n.level is NoticeLevel.ERROR]
    for who in ("ann", "bob"):
        assert any(who in m and "department" in m and "63" in m for m in problems), problems
