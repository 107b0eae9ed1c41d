"""A hand-made ``WITH GRANT OPTION`` on a privilege the catalog does grant: the role (and,
through membership, every person in it) may then pass the privilege on to anyone -- roles
provisioner does not manage included, where no drift report would ever see it.  The catalog
never grants grant options, so "no grant goes unseen" (docs/privileges.md) means the option
must be reported (``extras = "report"``) or revoked (``extras = "revoke"``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.privileges.support import Env, environment, run


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        yield e.write()


@pytest.mark.xfail(
    strict=True,
    reason="privileges are read without aclexplode's is_grantable: a grant option on a privilege the catalog "
    "grants is invisible to the diff and the drift report; fix: read it as its own privilege and plan "
    "REVOKE GRANT OPTION FOR (extras = revoke) or a privilege_extra notice (report)",
)
def test_a_hand_made_grant_option_on_a_catalog_privilege_is_seen(env: Env) -> None:
    p = env.prefix
    env.apply()
    with env.as_owner() as conn:
        run(conn, "GRANT SELECT ON trading.orders TO {} WITH GRANT OPTION", f"{p}trade_reader")  # extras = revoke
    with env.admin() as conn:
        row = conn.execute(
            "SELECT has_table_privilege(%s, 'trading.orders', 'SELECT WITH GRANT OPTION')", (f"{p}bkaczmarek",)
        ).fetchone()
    assert row == (True,), "a trader (through trade_executor -> trade_reader) may now grant SELECT to anyone"
    plan = env.plan()
    seen = [c.describe() for c in plan.changes if "orders" in c.describe()]
    seen += [n.message for t in plan.targets for n in t.notices if "orders" in n.message and "GRANT OPTION" in n.message.upper()]
    assert seen, "a grant option on trading.orders is neither revoked nor reported"
