"""A reload (SIGHUP) must not postpone the scheduled reconciliation.

Re-adding every job on reload restarted its interval: a configuration-management agent that
reloads more often than the interval (here every 2 s against an 8 s interval) kept every
scheduled run from ever happening, and a leaver whose HR status changed stayed enabled with
/readyz answering 200. A job whose schedule did not change keeps its next run time."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon.support import DaemonProc, daemonize, one_trader, wait_for
from tests.support.e2e import memberships, role_options
from tests.support.fixtures import LdapOu


def test_frequent_reloads_do_not_starve_the_schedule(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port = daemonize(setup, interval="8s")
    d = daemons(setup.path, port).wait_up()
    wait_for("alice's roles", lambda: memberships(p).get(f"{p}alice"))
    ldap_ou.modify(ldap_ou.user_dn("alice"), hrStatus="terminated")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and role_options(f"{p}alice")[0] is True:  # type: ignore[index]
        d.signal(signal.SIGHUP)
        time.sleep(2)
    scheduled = [e for e in d.events() if e.get("event") == "run_started" and e.get("trigger") == "reconcile"]
    assert role_options(f"{p}alice")[0] is False, f"alice still enabled; {len(scheduled)} scheduled run(s)"  # type: ignore[index]
    assert sum(1 for e in d.events() if e.get("event") == "reloaded") >= 2
