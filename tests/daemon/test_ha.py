"""Two daemons against one state database (a fresh PostgreSQL database) and one
target: only the holder of the target's leader lock applies; kill -9 it and the
other takes over."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from provisioner.store.state import StateStore
from tests.daemon.support import DaemonProc, daemonize, free_port, one_trader, wait_for
from tests.integration.test_reconcile_e2e import person
from tests.support import pg
from tests.support.e2e import memberships
from tests.support.fixtures import LdapOu


@pytest.fixture
def state_db() -> Iterator[str]:
    """A freshly created PostgreSQL database for the shared state store; dropped afterwards."""
    name = f"prov_state_{uuid.uuid4().hex[:10]}"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(pg.admin_dsn())
    params["dbname"] = name
    host, port, user = params.get("host", "127.0.0.1"), params.get("port", "5432"), params.get("user", "postgres")
    url = f"postgresql://{user}@{host}:{port}/{name}"
    if "password" in params:
        url = f"postgresql://{user}:{params['password']}@{host}:{port}/{name}"
    assert make_conninfo(**params)
    try:
        yield url
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def appliers(url: str, role: str) -> set[str]:
    """Actors of the change_applied audit records for ``role``."""
    store = StateStore(url)
    try:
        return {
            r.content["actor"]
            for r in store.iter_audit()
            if r.content["kind"] == "change_applied" and r.content["role"] == role
        }
    finally:
        store.close()


def test_only_the_leader_applies_and_a_killed_leader_is_replaced(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, state_db: str, daemons: Callable[..., DaemonProc]
) -> None:
    p = role_prefix
    setup = one_trader(tmp_path, ldap_ou, p)
    port_a = daemonize(setup, state_url=state_db)
    port_b = free_port()
    config_b = tmp_path / "config-b.toml"
    config_b.write_text(setup.path.read_text().replace(f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"))

    a = daemons(setup.path, port_a, name="a").wait_up()
    wait_for("alice's roles (applied by the first replica)", lambda: memberships(p).get(f"{p}alice"))
    b = daemons(config_b, port_b, name="b").wait_up()

    def followed(d: DaemonProc, n: int) -> bool:
        return sum(1 for e in d.events() if e.get("event") == "run_finished" and e.get("mode") == "plan") >= n

    wait_for("two follower runs of the second replica", lambda: followed(b, 2))
    assert b.get_json("/readyz")[1]["checks"]["leader"] == {f"{p}pg": False}
    assert a.get_json("/readyz")[1]["checks"]["leader"] == {f"{p}pg": True}

    ldap_ou.add_user("bob", **person("Operations", "Settlements Analyst"))
    wait_for("bob's roles", lambda: memberships(p).get(f"{p}bob"))
    assert (
        appliers(state_db, f"{p}alice")
        == appliers(state_db, f"{p}bob")
        == {a_actor := next(iter(appliers(state_db, f"{p}alice")))}
    )
    assert a_actor.endswith(f"/{a.pid}")
    assert not any(e.get("event") == "change_applied" for e in b.events())

    a.kill()  # SIGKILL: no cleanup; the server ends the session and releases the lock
    ldap_ou.add_user("carol", **person("Trading", "FX Trader"))
    wait_for("carol's roles (applied by the second replica)", lambda: memberships(p).get(f"{p}carol"))
    carol = appliers(state_db, f"{p}carol")
    assert len(carol) == 1 and next(iter(carol)).endswith(f"/{b.pid}")
    assert b.get_json("/readyz")[1]["checks"]["leader"] == {f"{p}pg": True}
    b.kill()


def leader_gauge(d: DaemonProc, target: str) -> float | None:
    code, body = d.request("GET", "/metrics")
    assert code == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "provisioner_leader" and sample.labels == {"target": target}:
                return float(sample.value)
    return None


def test_failover_takes_seconds_not_an_interval(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, state_db: str, daemons: Callable[..., DaemonProc]
) -> None:
    """Scheduled runs an hour apart: after kill -9 of the leader the follower's lock loop
    takes over within seconds and reconciles at once; the gauge says who leads."""
    p = role_prefix
    target = f"{p}pg"
    setup = one_trader(tmp_path, ldap_ou, p)
    port_a = daemonize(setup, state_url=state_db, interval="1h", extra='leader_retry = "1s"')
    port_b = free_port()
    config_b = tmp_path / "config-b.toml"
    config_b.write_text(setup.path.read_text().replace(f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"))

    a = daemons(setup.path, port_a, name="a").wait_up()
    wait_for("alice's roles (applied by the first replica)", lambda: memberships(p).get(f"{p}alice"))
    b = daemons(config_b, port_b, name="b").wait_up()
    wait_for("the second replica's first run", lambda: any(e.get("event") == "run_finished" for e in b.events()))
    assert leader_gauge(a, target) == 1.0 and leader_gauge(b, target) == 0.0

    ldap_ou.add_user("carol", **person("Trading", "FX Trader"))
    a.kill()  # SIGKILL: no cleanup; the server ends the session and releases the lock
    killed = time.monotonic()
    wait_for("the follower's leader gauge", lambda: leader_gauge(b, target) == 1.0, timeout=30, every=0.1)
    failover = time.monotonic() - killed
    wait_for("carol's roles (applied at takeover)", lambda: memberships(p).get(f"{p}carol"), timeout=30)
    applied = time.monotonic() - killed
    print(f"failover: leader after {failover:.2f}s, first apply after {applied:.2f}s")
    assert failover < 10, f"failover took {failover:.1f}s"  # 0.2-0.5 s on a quiet machine (bench/failover.py)
    carol = appliers(state_db, f"{p}carol")
    assert len(carol) == 1 and next(iter(carol)).endswith(f"/{b.pid}")
    triggers = [e["trigger"] for e in b.events() if e.get("event") == "run_started"]
    assert "leader_acquired" in triggers and triggers.count("reconcile") == 1, triggers
    assert a.non_json_lines() == [] and b.non_json_lines() == []
    b.kill()


def test_leader_sessions_have_keepalives(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """The lock session: libpq keepalives on the client, tcp_keepalives_* and
    idle_session_timeout on the server (a vanished leader host frees its lock)."""
    from provisioner.daemon.ha import Leadership

    setup = one_trader(tmp_path, ldap_ou, role_prefix)
    daemonize(setup, extra='leader_retry = "2s"')
    cfg = setup.config()
    leadership = Leadership(cfg)
    try:
        name = cfg.targets[0].name
        assert leadership.leads(name) and leadership.leading() == {name: True}
        lock = leadership._locks[name]
        conn = lock._conn  # type: ignore[union-attr]
        assert conn is not None
        params = conn.info.get_parameters()
        assert params.get("keepalives") == "1" and params.get("keepalives_idle") == "30"
        shown = {
            k: conn.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
            for k in ("tcp_keepalives_idle", "tcp_keepalives_count", "idle_session_timeout")
        }
        assert shown == {"tcp_keepalives_idle": "10", "tcp_keepalives_count": "3", "idle_session_timeout": "30s"}
    finally:
        leadership.release_all()
