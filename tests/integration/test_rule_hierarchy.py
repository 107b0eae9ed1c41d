"""Rule tests with nested groups and explain's failing condition (issue 15), checked
against what a real slapd with nested groups and PostgreSQL do.  Brownfield: the
business roles exist before the first run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from psycopg import sql

from provisioner.cli import cli
from tests.lifecycle.support import RELAXED, access, person
from tests.support import pg
from tests.support.e2e import make_setup
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "floor"
description = "everyone on the trading floor reads"
grant = ["{p}trade_reader"]
when = {{ group = "trading-floor" }}

[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "trader" }} ]
"""

CASES = """
[hierarchy]
desk-equities = ["trading-floor"]

[[case]]
name = "a desk member is on the floor through the nested group"
attributes = {{ department = "Trading", title = "Equity Trader" }}
groups = ["desk-equities"]
expect = ["{p}trade_reader", "{p}trade_executor"]

[[case]]
name = "an analyst outside the desks gets nothing"
attributes = {{ department = "Trading", title = "Analyst" }}
expect = []
"""


def test_rule_cases_with_a_hierarchy_predict_the_directory(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    with pg.admin_connect() as conn:
        for role in ("trade_reader", "trade_executor"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}{role}")))
    ann = ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("bob", **person("Trading", "Analyst"))
    desk = ldap_ou.add_group("desk-equities", [ann])
    ldap_ou.add_group("trading-floor", [desk])
    s = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES, extra=RELAXED)
    (tmp_path / "mappings" / "tests").mkdir()
    (tmp_path / "mappings" / "tests" / "cases.toml").write_text(CASES.format(p=p))

    runner = CliRunner()
    result = runner.invoke(cli, ["rules", "test", "-c", str(s.path)])
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.output

    s.apply(now=datetime(2026, 1, 5, 9, tzinfo=UTC))  # the directory agrees with the cases
    roles = access(p)
    assert roles[f"{p}ann"] == (True, frozenset({f"{p}trade_reader", f"{p}trade_executor"}))
    assert roles[f"{p}bob"] == (True, frozenset())

    result = runner.invoke(cli, ["explain", "-c", str(s.path), "bob"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert "failed: not in group 'trading-floor' (directly or nested)" in lines
    assert "failed: title regex 'trader' (has 'Analyst')" in lines
