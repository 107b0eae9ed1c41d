"""A rule's ``{ group = "approvers" }`` against Entra ID, where a display name is not unique:
any user allowed to create groups can make a second "Approvers" and put themselves in it.
As with LDAP (docs/lifecycle.md, tests/lifecycle/test_ownership.py), a name several groups
carry matches no one: the plan has an error naming the rule and every group's object id, the
rule's roles are neither granted nor revoked, and naming the group by object id resolves it.
Both read paths: ``plan`` reads in full, ``apply`` with delta queries (the state store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from provisioner.config import EntraSourceConfig
from tests.entra.test_entra_e2e import TomlSource, person
from tests.lifecycle.support import access
from tests.support.e2e import Setup, make_setup
from tests.support.graph_server import GraphServer

Make = Callable[..., EntraSourceConfig]


def _errors(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.message for t in plan.targets for n in t.notices if n.level.value == "error"]


def _granted(plan, role: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.role for c in plan.changes if c.kind.value == "grant_membership" and c.param("group") == role}


def test_a_second_group_with_the_same_display_name_grants_nothing(
    tmp_path: Path, graph: GraphServer, entra_config: Make, role_prefix: str
) -> None:
    p = role_prefix
    bob = graph.add_user("bob@contoso.com", **person("Legal", "Counsel"))
    mallory = graph.add_user("mallory@contoso.com", **person("Legal", "Intern"))
    real = graph.add_group("approvers", [bob])
    setup: Setup = make_setup(tmp_path, TomlSource(entra_config()), p)  # type: ignore[arg-type]
    setup.apply()
    approver = f"{p}trade_approver"
    assert approver in access(p)[f"{p}bob"][1]

    rogue = graph.add_group("Approvers", [mallory])  # self-service group creation, same name
    for plan in (setup.plan(), setup.apply()):  # full read, then delta
        assert f"{p}mallory" not in _granted(plan, approver), "a look-alike group granted trade_approver"
        errors = [e for e in _errors(plan) if "'approvers'" in e and real in e and rogue in e]
        assert errors, _errors(plan)
    now = access(p)
    assert approver not in now[f"{p}mallory"][1]
    assert approver in now[f"{p}bob"][1], "the real approvers keep their access meanwhile"

    rules = tmp_path / "mappings" / "rules" / "r.toml"  # the rule names the group by object id
    rules.write_text(rules.read_text().replace('group = "approvers"', f'group = "{real.upper()}"'))
    for plan in (setup.plan(), setup.apply()):
        assert not _errors(plan), _errors(plan)
    now = access(p)
    assert approver in now[f"{p}bob"][1] and approver not in now[f"{p}mallory"][1]
    assert not setup.plan().has_changes
