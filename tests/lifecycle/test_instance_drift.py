"""A derived installation name that changes (the LDIF moved, the LDAP URL changed) against
real PostgreSQL: the roles this installation made are then marked with the old name.  The
plan must name both names and refuse to apply (never silently treat them as another
installation's, whose leavers nobody disables); pinning the old name disables the leavers."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import LdifSourceConfig
from provisioner.core.values import marker as markers
from provisioner.errors import SafetyViolation
from tests.cli.test_cli import run
from tests.lifecycle.support import RULES, access, edit_config
from tests.support import pg
from tests.support.config import pin_instance
from tests.support.e2e import make_setup

UIDS = ["ann", "bob", "cy"]


def ldif(people: dict[str, tuple[str, str]]) -> str:
    return "\n".join(
        f"dn: uid={uid},ou=people,dc=drift,dc=test\nobjectClass: inetOrgPerson\nobjectClass: hrPerson\n"
        f"uid: {uid}\ncn: {uid}\nsn: {uid}\nentryUUID: 00000000-0000-4000-8000-{UIDS.index(uid):012d}\n"
        f"departmentNumber: {dept}\nhrStatus: {status}\n"
        for uid, (dept, status) in sorted(people.items())
    )


def comment(role: str) -> str | None:
    with pg.admin_connect() as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    assert row is not None, role
    return None if row[0] is None else str(row[0])


def test_moved_ldif_is_refused_naming_both_names_until_the_old_one_is_pinned(
    tmp_path: Path, role_prefix: str
) -> None:
    p = role_prefix
    first = tmp_path / "hr" / "people.ldif"
    first.parent.mkdir()
    first.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "active"), "cy": ("Operations", "active")}))
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}src", path=str(first)), p, rules=RULES)
    old = s.config().instance
    assert old.startswith("auto-")
    s.apply()
    m = markers.parse(comment(f"{p}bob"))
    assert m is not None and m.instance == old
    assert access(p)[f"{p}bob"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))

    # the HR export moves to another directory; bob leaves (terminated) and cy is gone from it
    moved = tmp_path / "exports" / "people.ldif"
    moved.parent.mkdir()
    moved.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "terminated")}))
    first.unlink()
    edit_config(s, str(first), str(moved))
    new = s.config().instance
    assert new.startswith("auto-") and new != old

    plan = s.plan()
    drift = [n.message for t in plan.targets for n in t.notices if n.code == "instance_changed"]
    assert len(drift) == 1, [n.message for t in plan.targets for n in t.notices]
    assert repr(old) in drift[0] and repr(new) in drift[0]
    assert f'instance = "{old}"' in drift[0], drift[0]

    res = run("plan", "-c", str(s.path))
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    assert old in res.stderr and new in res.stderr, res.stderr
    with pytest.raises(SafetyViolation, match=old):
        s.apply()
    assert access(p)[f"{p}bob"][0] is True, "nothing applied while the name is ambiguous"

    # the fix the notice names: pin the old name
    pin_instance(s.path, old)
    s.apply()
    after = access(p)
    assert after[f"{p}bob"] == (False, frozenset()), "the leaver is disabled"
    assert after[f"{p}cy"][0] is False, "the identity gone from the export is disabled"
    assert after[f"{p}ann"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    assert not s.plan().has_changes


def test_renamed_source_is_refused_naming_both_names_until_renamed_back(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    source = tmp_path / "people.ldif"
    source.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "active")}))
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}hr", path=str(source)), p, rules=RULES)
    pin_instance(s.path, f"{p}prod")  # pinned: only the source name moves
    s.apply()
    m = markers.parse(comment(f"{p}bob"))
    assert m is not None and m.source == f"{p}hr"

    # the source is renamed in the configuration the day bob is terminated
    source.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "terminated")}))
    edit_config(s, f'name = "{p}hr"', f'name = "{p}workday"')
    plan = s.plan()
    renamed = [n.message for t in plan.targets for n in t.notices if n.code == "source_renamed"]
    assert len(renamed) == 1, [n.message for t in plan.targets for n in t.notices]
    assert repr(f"{p}hr") in renamed[0] and repr(f"{p}workday") in renamed[0], renamed[0]
    with pytest.raises(SafetyViolation, match=f"{p}workday"):
        s.apply()
    assert access(p)[f"{p}bob"][0] is True, "nothing applied"

    edit_config(s, f'name = "{p}workday"', f'name = "{p}hr"')
    s.apply()
    assert access(p)[f"{p}bob"] == (False, frozenset())
    assert access(p)[f"{p}ann"][0] is True


def test_roles_of_a_source_no_longer_configured_are_warned_about(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    hr, contractors = tmp_path / "hr.ldif", tmp_path / "contractors.ldif"
    hr.write_text(ldif({"ann": ("Trading", "active")}))
    contractors.write_text(ldif({"bob": ("Trading", "active")}).replace("000000000001", "0000000000b1"))
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}hr", path=str(hr)), p, rules=RULES)
    pin_instance(s.path, f"{p}prod")
    second = f'[[sources]]\nname = "{p}contractors"\ntype = "ldif"\npath = "{contractors}"\n\n[[targets]]'
    edit_config(s, "[[targets]]", second)
    s.apply()
    assert access(p)[f"{p}bob"][0] is True

    edit_config(s, second, "[[targets]]")  # the contractors' source is taken out of the configuration
    plan = s.plan()
    orphaned = [n.message for t in plan.targets for n in t.notices if n.code == "orphaned"]
    assert len(orphaned) == 1 and repr(f"{p}contractors") in orphaned[0] and f"{p}bob" in orphaned[0], orphaned
    assert not [n for t in plan.targets for n in t.notices if n.code == "orphaned" and f"{p}ann" in n.message]



def test_adopt_instance_moves_the_old_derived_names_roles_to_a_pinned_name(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    first = tmp_path / "a.ldif"
    first.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "active")}))
    s = make_setup(tmp_path, LdifSourceConfig(type="ldif", name=f"{p}src", path=str(first)), p, rules=RULES)
    old = s.config().instance
    s.apply()
    moved = tmp_path / "b.ldif"
    moved.write_text(ldif({"ann": ("Trading", "active"), "bob": ("Trading", "terminated")}))
    edit_config(s, str(first), str(moved))
    pin_instance(s.path, f"{p}prod")  # as config.example.toml advises

    plan = s.plan()
    changed = [n.message for t in plan.targets for n in t.notices if n.code == "instance_changed"]
    assert len(changed) == 1 and f"adopt-instance --target pg --from {old}" in changed[0], changed
    res = run("adopt-instance", "-c", str(s.path), "--target", "pg", "--from", "team-x", "--reason", "CHG-9")
    assert res.returncode == 1 and "not a derived installation name" in res.stderr, res.stderr
    res = run("adopt-instance", "-c", str(s.path), "--target", "pg", "--from", old, "--reason", "CHG-9")
    assert res.returncode == 0, res.stderr
    assert "Adopted" in res.stdout and old in res.stdout
    for role in (f"{p}ann", f"{p}bob", f"{p}trade_executor"):
        m = markers.parse(comment(role))
        assert m is not None and m.instance == f"{p}prod", (role, m)
    assert access(p)[f"{p}bob"][0] is True, "adopting changes markers only"

    s.apply()
    assert access(p)[f"{p}bob"] == (False, frozenset())
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    assert not s.plan().has_changes
