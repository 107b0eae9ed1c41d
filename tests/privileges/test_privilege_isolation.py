"""Finding 2 of issue 14: a table the provisioner cannot grant on (created in a
wildcard schema by someone else) is isolated and reported; a leaver of the same
run is disabled, and every other grant applies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import ApplyFailed
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

    with pytest.raises(ApplyFailed) as failed:
        env.apply()
    message = str(failed.value)
    assert message.startswith("1 change(s) did not happen")
    assert "trading.superuser_notes" in message and "permission denied" in message
    assert access(p)[f"{p}bkaczmarek"] == (False, frozenset()), "the leaver is disabled in the same run"
    assert not env.has(f"{p}trade_reader", "SELECT", "trading.superuser_notes")
    assert env.has(f"{p}trade_reader", "SELECT", "trading.orders")
