"""A leaver of one directory is disabled on time while another directory is down.

Two LDAP sources feed the target: the trading directory (A) and a subsidiary's directory (B).
Alice (A) has a leave instant; B's server goes down before it. The leave timer's run must still
end alice's login -- her directory was read completely, and disabling her takes nothing from B's
people -- while B's people are left exactly as they are (nobody of B counts as vanished) and the
run reports B as unavailable. README: "Leavers are never held back"."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.daemon.support import DaemonProc, daemonize, wait_for
from tests.support.e2e import make_setup, memberships, person, role_options, source_toml
from tests.support.fixtures import LdapOu
from tests.support.slapd import Slapd

LEAD = 40.0
"""Seconds from the daemon's start to alice's leave instant (its first run must be done by then)."""


def test_leaver_of_one_directory_is_disabled_while_another_is_down(
    tmp_path: Path,
    ldap_ou: LdapOu,
    slapd_factory: Callable[..., Slapd],
    role_prefix: str,
    daemons: Callable[..., DaemonProc],
) -> None:
    p = role_prefix
    other = slapd_factory()
    other.slapadd([])
    other.start()
    subsidiary = LdapOu(other)
    subsidiary.add_user("bea", **person("Operations", "Settlements Analyst"))
    leave_at = (datetime.now(UTC) + timedelta(seconds=LEAD)).replace(microsecond=0)
    ldap_ou.add_user("alice", **person("Trading", "Equity Trader", hrLeaveDate=f"{leave_at:%Y%m%d%H%M%S}Z"))
    ldap_ou.add_user("amos", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}a"), p)
    text = setup.path.read_text().replace("[[targets]]", source_toml(subsidiary.config(name=f"{p}b")) + "\n\n[[targets]]")
    setup.path.write_text(text)
    port = daemonize(setup, interval="1h")
    d = daemons(setup.path, port).wait_up()
    wait_for("the first run's roles", lambda: memberships(p).get(f"{p}bea") and memberships(p).get(f"{p}alice"))
    before = memberships(p)
    assert role_options(f"{p}alice")[0] is True  # type: ignore[index]

    other.stop()  # the subsidiary's directory goes down before alice's leave instant
    assert datetime.now(UTC) < leave_at, "the first run took too long for this test's lead time"
    time.sleep(max(0.0, (leave_at - datetime.now(UTC)).total_seconds()))

    def alice_disabled() -> bool:
        options = role_options(f"{p}alice")
        return options is not None and options[0] is False

    try:
        wait_for("alice's login ended while B is down", alice_disabled, timeout=40)
    finally:
        failures = [e for e in d.events() if e.get("event") == "job_retry_scheduled"]
    assert any(f"{p}b" in str(e.get("message")) for e in failures), "the run names the directory that is down"
    after = memberships(p)
    assert f"{p}alice" not in after
    assert after[f"{p}bea"] == before[f"{p}bea"] and role_options(f"{p}bea")[0] is True  # type: ignore[index]
    assert after[f"{p}amos"] == before[f"{p}amos"]
