"""Two people of one source with one employee id: a warning notice, nobody's access changes."""

from __future__ import annotations

from datetime import UTC, datetime

from provisioner.core.identity.desired import desired_state, shared_employee_ids
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.rules import RuleSet
from provisioner.core.ownership.policy import DiffPolicy
from provisioner.core.reconcile.diff import diff
from provisioner.core.values.model import ActualState, Identity, SourceSnapshot


def person(sid: str, name: str, source: str = "ad", eid: str = "E100") -> Identity:
    return Identity(sid, name, source, {"employee_id": (eid,)})


def test_shared_ids_per_source_case_insensitive() -> None:
    found = shared_employee_ids([person("1", "eve"), person("2", "eva", eid=" e100 "), person("3", "ann", "entra")])
    assert found == ("ad: employee id 'E100' is shared by 2 people: eva, eve; each keeps their own access, "
                     "HR should correct the record",)
    # the same person in two sources (AD and Entra) is not a duplicate
    assert shared_employee_ids([person("1", "eve"), person("9", "eve", "entra")]) == ()


def test_a_warning_notice_and_both_provisioned() -> None:
    now = datetime.now(UTC)
    snap = SourceSnapshot("ad", (person("1", "eve"), person("2", "eva")))
    desired = desired_state([snap], RuleSet(()), NamingPolicy(), LifecyclePolicy(), now)
    assert set(desired.users) == {"eve", "eva"} and desired.problems == ()
    changes, notices = diff(desired, ActualState("pg", {}, "svc"), DiffPolicy(), now)
    assert {c.role for c in changes} == {"eve", "eva"}
    assert [(n.level.value, n.code) for n in notices if "E100" in n.message] == [("warning", "identity")]
