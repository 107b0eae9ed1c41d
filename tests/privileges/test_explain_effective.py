"""explain shows effective access only, every path, hand grants marked and SoD-withheld
access as withheld with its policy (issue 16, finding 3).  Real PostgreSQL;
brownfield: a DBA-made group role and hand grants."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from provisioner.cli import cli
from tests.privileges.support import RULES, environment, run

APPROVER_TOO = """
[[rule]]
id = "equity-approvers"
description = "equity traders also approve (a bad rule: SoD must stop it)"
grant = ["{p}trade_approver"]
when = {{ attr = "title", regex = "^equity trader" }}
"""

SOD = """[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
severity = "critical"
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
"""


def test_explain_withheld_access_is_not_shown_as_access(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    with environment(tmp_path, role_prefix) as env:
        env.write()
        (env.tmp / "mappings" / "sod").mkdir()
        (env.tmp / "mappings" / "sod" / "p.toml").write_text(SOD.format(p=p))
        env.apply()
        with env.admin() as conn:
            run(conn, "CREATE ROLE {} NOLOGIN", f"{p}dba_desk")
            run(conn, "GRANT {} TO {}", f"{p}dba_desk", f"{p}bkaczmarek")
        with env.as_owner() as conn:
            run(conn, "GRANT SELECT ON risk.limits TO {}", f"{p}dba_desk")
            run(conn, "GRANT DELETE ON trading.orders TO {}", f"{p}bkaczmarek")
        env.write(rules=RULES + APPROVER_TOO)
        out = CliRunner().invoke(cli, ["explain", "-c", str(env.path), "bkaczmarek"])
        assert out.exit_code == 0, out.output
        text = out.output
        effective = text[text.index("Effective access of bkaczmarek"):]
        # the approver role the new rule asks for is withheld: no "can" line through it
        assert "because rule `equity-approvers`" not in effective
        assert "can UPDATE trading.approvals(status)" not in effective
        assert f"WITHHELD {p}trade_approver by SoD policy trade-approve-execute (critical)" in effective
        assert "would UPDATE trading.approvals(status) (not granted)" in effective
        assert "\n  none; 1 error notice(s) above: requests withheld or refused\n" in text
        assert '"sod_violation"' not in text, "explain writes no violation record, log or alert"
        # every path: INSERT on orders through the executor, SELECT on orders through executor -> reader
        assert (
            f"bkaczmarek can INSERT trading.orders because rule `desk-traders` gives `{p}trade_executor`, "
            "which grants INSERT, UPDATE on table trading.orders"
        ) in effective
        assert f"bkaczmarek can SELECT trading.orders because rule `desk-traders` gives `{p}trade_executor`, " \
               f"which includes `{p}trade_reader`" in effective
        # hand grants are effective access too, and marked
        assert f"bkaczmarek can DELETE trading.orders by a hand grant to {p}bkaczmarek  [HAND GRANT]" in effective
        assert (
            f"bkaczmarek can SELECT risk.limits because {p}bkaczmarek is a member of {p}dba_desk by hand"
        ) in effective
        assert "everyone (PUBLIC), so bkaczmarek too, can: " in effective
        assert "EXECUTE trading.approve_order(bigint)" in effective
