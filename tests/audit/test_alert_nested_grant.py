"""An out-of-band grant of a sensitive role through a role in between (E2E finding, session 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psycopg import sql

from tests.audit.servers import webhook_server
from tests.support import pg
from tests.support.e2e import RELAXED_SAFETY, make_setup, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "readers"
description = "everyone on the desk reads"
grant = ["{p}trade_reader"]
when = {{ attr = "department", equals = "Trading" }}
"""

ALERTS = """
[alerts]
retry_backoff = "0s"

[[alerts.webhooks]]
name = "sec"
url = "env:TEST_HOOK"
"""


def test_a_sensitive_role_granted_by_hand_through_a_role_in_between_alerts(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """A DBA makes ``wrapper``, grants it the critical ``trade_approver`` and grants ``wrapper``
    to a managed trader: the trader can approve trades, the plan reports drift on ``wrapper``,
    and no alert goes out -- the "out-of-band grant of a sensitive role" alert of docs/alerts.md
    fires only when the sensitive role itself is the one granted by hand."""
    p = role_prefix
    q = sql.Identifier
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES, extra=RELAXED_SAFETY + ALERTS)
    (tmp_path / "mappings" / "roles").mkdir()
    (tmp_path / "mappings" / "roles" / "x.toml").write_text(
        f'[role."{p}trade_approver"]\ndescription = "approve"\nowner = "cco"\nsensitivity = "critical"\n')
    setup.apply()
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(q(f"{p}trade_approver")))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(q(f"{p}wrapper")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}trade_approver"), q(f"{p}wrapper")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(q(f"{p}wrapper"), q(f"{p}ann")))
    exe = str(Path(sys.executable).with_name("provisioner"))
    with webhook_server() as hook:
        env = {**os.environ, "TEST_HOOK": hook.url}
        done = subprocess.run([exe, "apply", "-c", str(setup.path), "--reason", "CHG-1"], capture_output=True,
                              text=True, env=env, timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        assert f"{p}wrapper" in done.stdout  # the drift is reported ...
    titles = [b["alert"]["title"] for b in hook.bodies]
    assert any(f"{p}trade_approver" in t and f"{p}ann" in t for t in titles), titles  # ... and alerted
