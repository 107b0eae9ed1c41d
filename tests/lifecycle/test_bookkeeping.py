"""Health and vanish bookkeeping on every apply, and a baseline that cannot
ratchet down (issue 14, findings 7 and 9), against slapd and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.core.values.plan import Plan
from provisioner.engine.connections import Targets
from provisioner.engine.run import plan_run
from provisioner.errors import SourceUnhealthy
from provisioner.store.state import StateStore
from tests.lifecycle.support import STRICT, access, edit_config, person, setup
from tests.support.e2e import Setup
from tests.support.fixtures import LdapOu


def saved_plan(s: Setup) -> Plan:
    """``provisioner plan -o FILE``: planned with the state store, as the CLI does."""
    cfg = s.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        with Targets(cfg) as targets:
            return plan_run(cfg, s.ctx(cfg, store), targets).plan
    finally:
        store.close()


def test_saved_plans_advance_vanish_counters_and_the_health_baseline(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """Finding 7: only ``plan -o`` then ``apply --plan``, never a plain apply."""
    p = role_prefix
    dns = [ldap_ou.add_user(f"u{i}", **person("Trading")) for i in range(10)]
    s = setup(tmp_path, ldap_ou, p, extra=STRICT.replace("max_revocation_share = 0.2", "max_revocation_share = 1.0"))
    edit_config(s, "[safety]", "[lifecycle]\nvanish_after_runs = 2\n\n[safety]")
    s.apply(saved=saved_plan(s))
    assert all(access(p)[f"{p}u{i}"][0] for i in range(10))

    ldap_ou.delete(dns[0])  # u0 is deleted from the directory
    s.apply(saved=saved_plan(s))
    assert access(p)[f"{p}u0"][0], "one missing read is not enough (vanish_after_runs = 2)"
    second = saved_plan(s)
    assert any(c.role == f"{p}u0" and c.param("login") is False for c in second.changes), "the counter moved"
    s.apply(saved=second)
    assert access(p)[f"{p}u0"] == (False, frozenset()), "the deleted person's access ends"

    for dn in dns[1:5]:  # 4 of the 9 left: a 50% drop against the baseline of 10
        ldap_ou.delete(dn)
    with pytest.raises(SourceUnhealthy, match="50% fewer than the baseline of 10"):
        saved_plan(s)


def test_the_baseline_cannot_ratchet_down(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """Finding 9: runs each losing 18% are compared with the largest recent count."""
    p = role_prefix
    dns = [ldap_ou.add_user(f"u{i}", **person("Trading")) for i in range(50)]
    s = setup(tmp_path, ldap_ou, p, extra=STRICT)
    s.apply()
    for dn in dns[:9]:  # 50 -> 41: 18% fewer, within max_identity_drop = 20%
        ldap_ou.delete(dn)
    s.apply()
    for dn in dns[9:16]:  # 41 -> 34: 17% fewer than 41, but 32% fewer than the 50 of the window
        ldap_ou.delete(dn)
    with pytest.raises(SourceUnhealthy, match="32% fewer than the baseline of 50"):
        s.apply()
    assert access(p)[f"{p}u10"][0], "nothing of the second drop was applied"
