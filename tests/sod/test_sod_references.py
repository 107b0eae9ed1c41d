"""SoD policies naming unknown roles or tables are errors, not silent no-ops
(issue 16, finding 5).  Real PostgreSQL with the sample trading schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.privileges.support import Env, environment
from tests.sod.test_sod_e2e import run_cli

DEPT_RULE = """
[[rule]]
id = "dept"
description = "department role"
grant = ["{p}dept_{{department}}"]
when = {{ attr = "department", present = true }}
"""


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    from tests.privileges.support import RULES

    with environment(tmp_path, role_prefix) as e:
        yield e.write(rules=RULES + DEPT_RULE)


def write_policy(env: Env, *sides: str) -> None:
    folder = env.tmp / "mappings" / "sod"
    folder.mkdir(exist_ok=True)
    (folder / "p.toml").write_text(
        '# policies\n\n[[policy]]\nid = "approve-execute"\ndescription = "no both"\n'
        f"conflicts = [ {', '.join(sides)} ]\n"
    )


def test_unknown_role_fails_validation_with_file_and_line(env: Env) -> None:
    p = env.prefix
    write_policy(env, f'{{ role = "{p}trade_aprover" }}', f'{{ role = "{p}trade_executor" }}')
    done = run_cli("validate", "-c", str(env.path))
    assert done.returncode == 1, done.stdout
    assert f"p.toml:3: policy 'approve-execute' names role '{p}trade_aprover'" in done.stderr, done.stderr
    assert f"{p}trade_executor'" not in done.stderr  # a catalog role is fine

    write_policy(env, f'{{ role = "{p}dept_trading" }}', f'{{ role = "{p}trade_executor" }}')  # templated rule role
    assert run_cli("validate", "-c", str(env.path)).returncode == 0


def test_unknown_table_is_an_error_at_plan_time_and_in_the_report(env: Env) -> None:
    p = env.prefix
    write_policy(env, '{ privilege = "UPDATE", on = "trading.aprovals" }', '{ privilege = "INSERT", on = "trading.orders" }')
    assert run_cli("validate", "-c", str(env.path)).returncode == 0  # tables are known only at plan time
    plan = env.plan()
    (notice,) = [n for t in plan.targets for n in t.notices if n.code == "sod_reference"]
    assert notice.level.value == "error"
    assert f"names table trading.aprovals, which does not exist in database(s) {p}db0" in notice.message
    assert "p.toml:3" in notice.message
    report = run_cli("sod", "report", "-c", str(env.path), "--detailed-exitcode")
    assert report.returncode == 2 and "trading.aprovals" in report.stdout
    data = json.loads(run_cli("sod", "report", "-c", str(env.path), "--format", "json").stdout)
    assert any("trading.aprovals" in m for m in data["reference_problems"])
