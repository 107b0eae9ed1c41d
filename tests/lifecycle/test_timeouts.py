"""Timeouts on every target session (issue 14, finding 4): a DBA's open
transaction delays one change by at most ``lock_timeout``; that change is
reported and retried, and everything else of the run applies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from provisioner.errors import ApplyFailed
from provisioner.targets.mysql import MysqlTarget
from provisioner.targets.postgres import PostgresTarget
from tests.lifecycle.support import access, edit_config, person, setup
from tests.support import pg
from tests.support.fixtures import LdapOu


def test_a_dba_idle_in_transaction_holds_back_nothing_else(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    ann = ldap_ou.add_user("ann", **person("Trading"))
    bob = ldap_ou.add_user("bob", **person("Trading"))
    s = setup(tmp_path, ldap_ou, p)
    edit_config(s, 'drift = "report"', 'drift = "report"\nlock_timeout = 1')
    s.apply()
    ldap_ou.modify(ann, hrStatus="terminated")
    ldap_ou.modify(bob, hrStatus="terminated")

    dba = psycopg.connect(pg.admin_dsn())  # a DBA's session, idle in transaction on ann's row
    dba.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(sql.Identifier(p + "ann")))
    pid = dba.info.backend_pid

    def end_dba_session() -> None:  # the test never hangs, even on a build without timeouts
        with pg.admin_connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    safety_net = threading.Timer(30, end_dba_session)
    safety_net.start()
    try:
        started = time.monotonic()
        with pytest.raises(ApplyFailed) as failed:
            s.apply()
        elapsed = time.monotonic() - started
        message = str(failed.value)
        assert f"alter role {p}ann NOLOGIN" in message and "lock timeout" in message
        assert elapsed < 15, f"the apply waited {elapsed:.1f} s"
        now = access(p)
        assert now[p + "bob"] == (False, frozenset()), "the other leaver is disabled in the same run"
        assert now[p + "ann"] == (True, frozenset()), "ann's memberships are revoked; her NOLOGIN waits"
    finally:
        safety_net.cancel()
        if not dba.closed and not dba.broken:
            dba.rollback()
        dba.close()
    s.apply()  # the next run retries what did not happen
    assert access(p)[p + "ann"] == (False, frozenset())


def test_postgres_sessions_carry_the_timeouts(pg_target: PostgresTarget) -> None:
    conn = pg_target.connection()
    row = conn.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").fetchone()
    assert row == ("10s", "5min")  # the defaults: 10 s and 300 s


def test_postgres_sessions_never_jit_compile(pg_target: PostgresTarget) -> None:
    """The catalog reads are estimated dear enough to be JIT-compiled, which costs far more
    than running them (issue 19): every session of the target turns JIT off."""
    home = pg_target.connection()
    other = pg_target.database_connection("postgres")
    for conn in (home, other):
        assert conn.execute("SELECT current_setting('jit')").fetchone() == ("off",)


def test_mariadb_sessions_carry_the_timeouts(mysql_target: MysqlTarget) -> None:
    with mysql_target.connection().cursor() as cur:
        cur.execute(
            "SELECT @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout, @@SESSION.max_statement_time"
        )
        assert tuple(cur.fetchone() or ()) == (10, 10, 300.0)
