"""`roles show` and `explain` down to tables, against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from provisioner.cli import cli
from tests.privileges.support import environment


def test_roles_show_and_explain_reach_down_to_tables(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    with environment(tmp_path, role_prefix) as env:
        env.write()
        env.apply()
        runner = CliRunner()
        shown = runner.invoke(cli, ["roles", "show", "-c", str(env.path), f"{p}trade_executor"])
        assert shown.exit_code == 0, shown.output
        assert f"inherits: {p}trade_reader" in shown.output
        assert "held    INSERT     trading.orders" in shown.output
        assert f"via `{p}trade_executor`, which includes `{p}trade_reader`, which grants SELECT on all tables" in shown.output
        missing = runner.invoke(cli, ["roles", "show", "-c", str(env.path), "nope"])
        assert missing.exit_code == 1 and "'nope' is not a catalog role" in missing.output
        explained = runner.invoke(cli, ["explain", "-c", str(env.path), "bkaczmarek"])
        assert explained.exit_code == 0, explained.output
        assert (
            f"bkaczmarek can INSERT trading.orders because rule `desk-traders` gives `{p}trade_executor`, "
            "which grants INSERT, UPDATE on table trading.orders, trading.executions"
        ) in explained.output
