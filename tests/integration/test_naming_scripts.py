"""Role names from names in every script (issue 15), against real slapd and PostgreSQL:
transliteration by default, ``naming.charset = "unicode"``, names with nothing usable
refused with the reason, confusable names both refused and reported.

Brownfield: the business roles exist before the first run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from provisioner.core.values.plan import NoticeLevel, Plan
from provisioner.engine.connections import Targets
from provisioner.engine.context import RunContext
from provisioner.engine.run import apply_run
from provisioner.engine.warm import WarmState
from provisioner.store.state import StateStore
from tests.lifecycle.support import RELAXED, access, edit_config, person, setup
from tests.support import pg
from tests.support.e2e import Setup
from tests.support.fixtures import LdapOu

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _errors(plan: Plan) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.level is NoticeLevel.ERROR]


def _setup(tmp_path: Path, ldap_ou: LdapOu, p: str) -> Setup:
    with pg.admin_connect() as conn:
        for role in ("ops_settlement", "trade_reader"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}{role}")))
    return setup(tmp_path, ldap_ou, p, extra=RELAXED)


def test_every_script_is_transliterated_and_lookalikes_are_refused(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("alice", **person("Operations"))
    s = _setup(tmp_path, ldap_ou, p)
    s.apply(now=NOW)
    assert access(p)[f"{p}alice"][0] is True

    ldap_ou.add_user("\u0430lice", **person("Operations"))  # Cyrillic small a (U+0430): looks like alice
    ldap_ou.add_user("Γιάννης", **person("Operations"))
    ldap_ou.add_user("zoë.müller", **person("Operations"))
    ldap_ou.add_user("---", **person("Operations"))
    plan = s.apply(now=NOW)
    roles = access(p)
    assert f"{p}giannis" in roles and f"{p}zoe_muller" in roles
    assert f"{p}lice" not in roles, "a Cyrillic letter is transliterated, never dropped"
    errors = _errors(plan)
    assert any("role name collision" in m and f"'{p}alice'" in m and "\u0430lice (" in m for m in errors), errors
    assert any("'---'" in m and "no usable role name" in m for m in errors), errors
    assert roles[f"{p}alice"][0] is True, "held, not changed: the existing alice keeps what she has"


def test_unicode_charset_keeps_scripts_and_refuses_confusables(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("Γιάννης", **person("Operations"))
    ldap_ou.add_user("zoë.müller", **person("Operations"))
    ldap_ou.add_user("alice", **person("Operations"))
    ldap_ou.add_user("\u0430lice", **person("Operations"))
    s = _setup(tmp_path, ldap_ou, p)
    edit_config(s, f'prefix = "{p}"', f'prefix = "{p}"\ncharset = "unicode"')
    plan = s.apply(now=NOW)
    roles = access(p)
    assert f"{p}γιάννης" in roles and f"{p}zoë_müller" in roles
    assert f"{p}alice" not in roles and f"{p}\u0430lice" not in roles, "look-alikes: both refused"
    assert any("confusable role names" in m and f"'{p}alice'" in m for m in _errors(plan)), _errors(plan)


def test_a_warm_process_still_refuses_a_newly_confusable_name(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """The daemon keeps each name's TR39 skeleton between runs (WarmState): a name that
    arrives later and looks like one already kept is still refused, with the kept one."""
    p = role_prefix
    ldap_ou.add_user("alice", **person("Operations"))
    ldap_ou.add_user("bob", **person("Operations"))
    s = _setup(tmp_path, ldap_ou, p)
    edit_config(s, f'prefix = "{p}"', f'prefix = "{p}"\ncharset = "unicode"')
    cfg = s.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    warm = WarmState()

    def run(now: datetime) -> Plan:
        ctx = RunContext(now, "pytest", "schedule", store=store, warm=warm)
        with Targets(s.config()) as targets:
            return apply_run(s.config(), ctx, targets)

    try:
        run(NOW)
        assert f"{p}alice" in access(p) and not _errors(run(NOW + timedelta(minutes=1)))
        ldap_ou.add_user("\u0430lice", **person("Operations"))  # Cyrillic small a: looks like alice
        plan = run(NOW + timedelta(minutes=2))
    finally:
        store.close()
    assert any("confusable role names" in m and f"'{p}alice'" in m for m in _errors(plan)), _errors(plan)
    assert f"{p}\u0430lice" not in access(p), "the newcomer is refused"
    assert not any(c.role == f"{p}alice" for c in plan.changes), "the kept name is held: unchanged"
