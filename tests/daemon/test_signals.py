"""SIGTERM during an apply, and SIGHUP with a broken rule file, against the daemon
as a subprocess with a real slapd and PostgreSQL."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from provisioner.targets.base import lock_key
from tests.daemon.support import DaemonProc, daemonize, one_trader, wait_for
from tests.integration.test_reconcile_e2e import person
from tests.support import pg
from tests.support.e2e import RULES, make_setup, memberships
from tests.support.fixtures import LdapOu

USERS = 300


def _lock_parts(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def test_sigterm_during_apply_finishes_the_transaction_and_exits_0(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    records = []
    for i in range(USERS):
        dept, title = ("Trading", "Equity Trader") if i % 2 else ("Operations", "Settlements Analyst")
        records.append(
            (
                ldap_ou.user_dn(f"u{i:04d}"),
                {
                    "objectClass": ["inetOrgPerson", "hrPerson"],
                    "uid": f"u{i:04d}",
                    "cn": f"U{i}",
                    "sn": f"U{i}",
                    **person(dept, title),
                },
            )
        )
    ldap_ou.add(records)
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p)
    port = daemonize(setup, interval="2s")
    classid, objid = _lock_parts(lock_key("apply", f"{p}pg"))

    # Hold the target's apply lock so that the daemon's apply transaction is
    # provably open (waiting inside it) when SIGTERM arrives.
    with pg.admin_connect() as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (lock_key("apply", f"{p}pg"),))
        d = daemons(setup.path, port).wait_up()

        def apply_waiting() -> bool:
            row = blocker.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = %s AND objid = %s AND objsubid = 1",
                (classid, objid),
            ).fetchone()
            return bool(row and row[0])

        wait_for("the daemon's apply transaction to wait for the target lock", apply_waiting)
        assert memberships(p) == {}
        d.signal(signal.SIGTERM)
        wait_for(
            "the daemon to log that it is stopping",
            lambda: any(e.get("event") == "daemon_stopping" for e in d.events()),
        )
        assert d.proc.poll() is None, "the daemon must not exit before the transaction in progress ends"
        blocker.execute("SELECT pg_advisory_unlock(%s)", (lock_key("apply", f"{p}pg"),))
        assert d.wait() == 0, d.logs()[-3000:]

    events = [e.get("event") for e in d.events()]
    assert "daemon_stopping" in events and "daemon_stopped" in events
    assert events.index("daemon_stopping") < events.index("target_applied") or "target_applied" in events

    # all or nothing per role: every user has both of its planned memberships, or none
    after = memberships(p)
    for i in range(USERS):
        got = after.get(f"{p}u{i:04d}", set())
        want = {f"{p}trade_executor", f"{p}trade_reader"} if i % 2 else {f"{p}ops_settlement", f"{p}trade_reader"}
        assert got in (set(), want), (i, got)

    # the next run converges: nothing left to do
    plan = setup.plan()
    assert not plan.has_changes, [c.describe() for c in plan.changes][:5]


def test_sighup_with_broken_rules_keeps_the_old_rules(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port = daemonize(setup)
    d = daemons(setup.path, port).wait_up()
    wait_for("alice's roles", lambda: memberships(p).get(f"{p}alice"))

    rule_file = tmp_path / "mappings" / "rules" / "r.toml"
    rule_file.write_text('[[rule]]\nid = "broken"\ngrant = ["x"\n')  # not TOML
    d.signal(signal.SIGHUP)

    def reload_failure() -> dict[str, object] | None:
        code, detail = d.get_json("/readyz")
        config = detail["checks"]["config"]
        return config if code == 503 and not config["ok"] else None

    config = wait_for("/readyz to report the failed reload", reload_failure)
    assert "r.toml" in str(config["reload_error"])
    assert any(e.get("event") == "reload_failed" and e.get("level") == "error" for e in d.events())

    # a directory change is still reconciled, by the old rules
    ldap_ou.add_user("bob", **person("Trading", "FX Trader"))
    wait_for("bob's roles under the old rules", lambda: memberships(p).get(f"{p}bob"))
    assert memberships(p)[f"{p}bob"] == {f"{p}trade_executor", f"{p}trade_reader"}
    assert d.proc.poll() is None

    # a valid new rule set is taken on the next SIGHUP, and readiness recovers
    rule_file.write_text(
        RULES.format(p=p)
        + f'\n[[rule]]\nid = "fx"\ndescription = "fx desk"\ngrant = ["{p}fx_desk"]\nwhen = {{ attr = "title", equals = "FX Trader" }}\n'
    )
    d.signal(signal.SIGHUP)
    wait_for("/readyz 200 after a good reload", lambda: d.get_json("/readyz")[0] == 200)
    wait_for("bob's role from the new rule", lambda: f"{p}fx_desk" in memberships(p).get(f"{p}bob", set()))
