"""Finding 2 of issue 14: a table the provisioner cannot grant on (created in a
wildcard schema by someone else) is refused at plan time and reported (it failed at
apply before: isolated, the run ended ApplyFailed); a leaver of the same run is
disabled, and every other grant applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle.support import access
from tests.privileges.support import LDIF, Env, environment


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        yield e.write()


def test_ungrantable_table_never_holds_back_a_leaver(env: Env, tmp_path: Path) -> None:
    p = env.prefix
    directory = tmp_path / "directory.ldif"
    directory.write_text(LDIF.read_text())
    env.path.write_text(env.path.read_text().replace(str(LDIF), str(directory)))
    env.apply()
    assert access(p)[f"{p}bkaczmarek"][0] is True

    with env.admin() as conn:  # a superuser's table in the schema the catalog grants wholesale
        conn.execute("CREATE TABLE trading.superuser_notes (id int)")
    text = directory.read_text()
    start = text.index("uid: bkaczmarek")
    directory.write_text(text[:start] + text[start:].replace("hrStatus: active", "hrStatus: terminated", 1))

    plan = env.apply()  # nothing fails at apply
    refused = [n.message for t in plan.targets for n in t.notices if n.code == "not_grantable"]
    assert len(refused) == 1 and "trading.superuser_notes" in refused[0] and "catalog.toml" in refused[0], refused
    assert not [c for c in plan.changes if "superuser_notes" in c.describe()]
    assert access(p)[f"{p}bkaczmarek"] == (False, frozenset()), "the leaver is disabled in the same run"
    assert not env.has(f"{p}trade_reader", "SELECT", "trading.superuser_notes")
    assert env.has(f"{p}trade_reader", "SELECT", "trading.orders")
