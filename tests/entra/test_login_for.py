"""``login_for = "granted"`` (issue 15) with the local Graph server and the real
PostgreSQL: Entra guests no rule matches get no role at all; one provisioned before the
switch is disabled; employees a rule grants keep theirs.  Brownfield: the business
roles exist before the first run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from provisioner.config import EntraSourceConfig
from tests.entra.test_entra_e2e import TomlSource, person
from tests.lifecycle.support import access
from tests.support import pg
from tests.support.e2e import make_setup
from tests.support.graph_server import GraphServer

Make = Callable[..., EntraSourceConfig]


def test_guests_no_rule_matches_get_no_role(
    tmp_path: Path, graph: GraphServer, entra_config: Make, role_prefix: str
) -> None:
    p = role_prefix
    with pg.admin_connect() as conn:
        for role in ("ops_settlement", "trade_reader"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}{role}")))
    graph.add_user("bob@contoso.com", **person("Operations", "Settlements Analyst"))
    guest = {"userType": "Guest", "mail": "pat@partner.example"}
    graph.add_user("pat_partner.example#EXT#@contoso.onmicrosoft.com", **guest)
    setup = make_setup(tmp_path, TomlSource(entra_config(delta=False)), p)  # type: ignore[arg-type]
    setup.apply()
    before = access(p)
    assert before[f"{p}bob"][0] is True
    guest_role = next(name for name in before if "pat_partner" in name)
    assert before[guest_role] == (True, frozenset()), "login_for = everyone: a LOGIN role for the guest"

    text = setup.path.read_text()
    assert 'login_for = "everyone"' in text  # the default, written out by the test setup
    setup.path.write_text(text.replace('login_for = "everyone"', 'login_for = "granted"', 1))
    graph.add_user("quinn_vendor.example#EXT#@contoso.onmicrosoft.com", **guest)
    plan = setup.apply()
    after = access(p)
    assert after[f"{p}bob"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    assert after[guest_role] == (False, frozenset()), "the guest provisioned before the switch is disabled"
    assert not any("quinn_vendor" in name for name in after), "a new guest gets no role"
    reasons = {r.rule for c in plan.changes if c.role == guest_role for r in c.reasons}
    assert "login_for:granted" in reasons
    assert not setup.plan().has_changes
