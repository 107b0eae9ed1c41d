"""Role names a rule template makes from directory data, refused at plan time as a whole:
not the role's creation alone, but every membership in it too (E2E findings, session 14)."""

from __future__ import annotations

from pathlib import Path

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
