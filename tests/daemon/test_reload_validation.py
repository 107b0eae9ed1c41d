"""SIGHUP with rules that ``provisioner validate`` rejects: a rule reading an attribute no
source maps (``departmnet``) would silently never match -- every trader's access revoked on
the next run, or, under ``not``, granted to everyone. The daemon must refuse such a reload
like a file that is not TOML: keep the old rules, answer /readyz 503 naming file, line and
attribute, and change nothing (docs/daemon.md "Signals"; docs/rules.md)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.daemon.support import DaemonProc, daemonize, one_trader, wait_for
from tests.support.e2e import memberships
from tests.support.fixtures import LdapOu


def test_sighup_with_an_unmapped_attribute_keeps_the_old_rules(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port = daemonize(setup)
    d = daemons(setup.path, port).wait_up()
    wait_for("alice's roles", lambda: memberships(p).get(f"{p}alice"))
    traders = {f"{p}trade_executor", f"{p}trade_reader"}
    assert memberships(p)[f"{p}alice"] == traders

    rule_file = tmp_path / "mappings" / "rules" / "r.toml"
    rule_file.write_text(rule_file.read_text().replace('attr = "department", equals = "Trading"', 'attr = "departmnet", equals = "Trading"'))
    d.signal(signal.SIGHUP)

    def settled() -> int:  # a reload answered (either way) and two runs after it
        events = d.events()
        at = next((i for i, e in enumerate(events) if e.get("event") in ("reloaded", "reload_failed")), None)
        return at is not None and sum(1 for e in events[at:] if e.get("event") == "run_finished") >= 2

    wait_for("the reload and two runs after it", settled)
    code, ready = d.get_json("/readyz")
    config = ready["checks"]["config"]
    assert code == 503 and not config["ok"], ready
    assert f"{rule_file}:2: rule 'desk-traders' reads attribute 'departmnet'" in config["reload_error"], config
    assert memberships(p)[f"{p}alice"] == traders, "the old rules stay in force"
