"""The Entra source against the local Graph server: msal's HTTP layer and
requests run for real; nothing below HTTP is stubbed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import EntraSourceConfig, parse_config
from provisioner.core.values.model import SourceSnapshot
from provisioner.errors import ConfigError, SourceIncomplete, SourceUnavailable
from provisioner.sources.entra import EntraSource, incremental_sync, state_key
from tests.entra.conftest import make_certificate
from tests.support.graph_server import GraphServer

Make = Callable[..., EntraSourceConfig]


class MemoryStore:
    """The key/value half of the state store, in memory (JSON round trip like the real one)."""

    def __init__(self) -> None:
        import json

        self._json = json
        self.data: dict[str, str] = {}
        self.writes = 0

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.data.get(key)
        return self._json.loads(raw) if raw is not None else default

    def put(self, key: str, value: Any) -> None:
        self.writes += 1
        self.data[key] = self._json.dumps(value)


def read(cfg: EntraSourceConfig, store: Any = None, groups: tuple[str, ...] = ("approvers",)) -> SourceSnapshot:
    source = EntraSource(cfg, store, groups)
    try:
        return source.read()
    finally:
        source.close()


def directory(graph: GraphServer) -> dict[str, str]:
    ids = {
        "alice": graph.add_user(
            "alice@contoso.com",
            department="Trading",
            jobTitle="Equity Trader",
            employeeType="Employee",
            employeeId="E1",
            companyName="Contoso Markets",
            employeeHireDate="2019-03-01T00:00:00Z",
            onPremisesSamAccountName="ALICE1",
            onPremisesExtensionAttributes={"extensionAttribute3": "CC-100", "extensionAttribute4": None},
        ),
        "bob": graph.add_user("bob@contoso.com", department="Operations", jobTitle="Settlements Analyst"),
        "carol": graph.add_user("carol@contoso.com", department="Trading", jobTitle="Head of Trading"),
        "erin": graph.add_user("erin@contoso.com", department="Legal", accountEnabled=False),
    }
    graph.set_manager(ids["alice"], ids["carol"])
    inner = graph.add_group("desk-heads", [ids["carol"]])
    ids["approvers"] = graph.add_group("Approvers", [inner])
    ids["desk-heads"] = inner
    graph.add_group("o'brien's desk", [ids["bob"]])
    return ids


def test_full_read_maps_users_groups_and_manager(graph: GraphServer, entra_config: Make) -> None:
    ids = directory(graph)
    cfg = entra_config(extension_attributes={"extensionAttribute3": "cost_center"}, delta=False)
    snap = read(cfg, groups=("approvers", "o'brien's desk", "missing-group"))
    by = {i.username: i for i in snap.identities}
    assert set(by) == {"alice", "bob", "carol", "erin"}
    alice = by["alice"]
    assert alice.stable_id == ids["alice"] and alice.dn == "alice@contoso.com"
    assert alice.attributes["department"] == ("Trading",)
    assert alice.attributes["title"] == ("Equity Trader",)
    assert alice.attributes["employee_type"] == ("Employee",)
    assert alice.attributes["employee_id"] == ("E1",)
    assert alice.attributes["company"] == ("Contoso Markets",)
    assert alice.attributes["hire_date"] == ("2019-03-01T00:00:00+00:00",)  # a timestamp keeps its time
    assert alice.attributes["cost_center"] == ("CC-100",)
    assert alice.attributes["manager"] == ("carol@contoso.com",)
    assert alice.attributes["manager_id"] == (ids["carol"],)
    assert by["carol"].groups == {"approvers", ids["approvers"].lower()}, "nested membership through desk-heads"
    assert by["bob"].groups == {"o'brien's desk", *(g for g in by["bob"].groups if g != "o'brien's desk")}
    assert not alice.groups
    assert by["erin"].enabled is False
    assert snap.group_count == 2
    assert any("missing-group" in w for w in snap.warnings)
    # one paged transitiveMembers call per referenced group, never one per user
    assert len(graph.requests_to("/v1.0/groups/")) == 2


@pytest.mark.parametrize(
    ("username_from", "expected"),
    [("upn", "alice@contoso.com"), ("mailNickname", "alice"), ("onPremisesSamAccountName", "ALICE1")],
)
def test_username_from(graph: GraphServer, entra_config: Make, username_from: str, expected: str) -> None:
    directory(graph)
    snap = read(entra_config(username_from=username_from, delta=False))
    names = {i.username for i in snap.identities}
    assert expected in names
    if username_from == "onPremisesSamAccountName":
        assert len(names) == 1 and any("skipped without onPremisesSamAccountName" in w for w in snap.warnings)


def test_user_filter_simple_and_advanced(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    graph.add_user("zed@fabrikam.com", department="Trading")
    snap = read(entra_config(delta=False, user_filter="department eq 'Trading'"))
    assert {i.username for i in snap.identities} == {"alice", "carol", "zed"}
    snap = read(entra_config(delta=False, user_filter="endswith(userPrincipalName,'@fabrikam.com')"))
    assert {i.username for i in snap.identities} == {"zed"}
    last = graph.requests_to("/v1.0/users")[-1]
    assert "%24count=true" in last.query or "$count=true" in last.query


def test_delta_path_equals_full_path_through_changes(graph: GraphServer, entra_config: Make) -> None:
    ids = directory(graph)
    cfg = entra_config()
    full_cfg = cfg.model_copy(update={"delta": False})
    store = MemoryStore()
    groups = ("approvers", "desk-heads")
    first = EntraSource(cfg, store, groups)
    assert first.read().identities == read(full_cfg, groups=groups).identities
    assert first.info.mode == "resync"

    graph.update_user(ids["alice"], department="Operations", jobTitle=None)
    graph.update_user(ids["erin"], accountEnabled=True)
    dave = graph.add_user("dave@contoso.com", department="Trading", jobTitle="FX Trader")
    graph.set_manager(dave, ids["alice"])
    graph.set_manager(ids["alice"], None)
    graph.add_member(ids["desk-heads"], ids["bob"])
    graph.remove_member(ids["desk-heads"], ids["carol"])
    graph.delete_user(ids["bob"], reason="changed")  # soft-deleted: removed from the snapshot too
    snap = first.read()
    assert first.info.mode == "delta" and first.info.users_removed == 1
    assert snap.identities == read(full_cfg, groups=groups).identities
    by = {i.username: i for i in snap.identities}
    assert "bob" not in by and by["erin"].enabled
    assert "title" not in by["alice"].attributes and "manager" not in by["alice"].attributes
    assert by["dave"].attributes["manager"] == ("alice@contoso.com",)
    assert by["carol"].groups == frozenset()

    graph.add_member(ids["desk-heads"], dave)
    graph.delete_user(ids["carol"])
    # a fresh source object (as in the next run) continues from the stored delta links
    again = EntraSource(cfg, store, groups)
    snap = again.read()
    assert again.info.mode == "delta"
    assert snap.identities == read(full_cfg, groups=groups).identities
    assert {i.username: i.groups for i in snap.identities}["dave"] >= {"approvers", "desk-heads"}
    first.close()
    again.close()


def test_expired_delta_token_forces_full_resync(graph: GraphServer, entra_config: Make) -> None:
    ids = directory(graph)
    cfg = entra_config()
    store = MemoryStore()
    source = EntraSource(cfg, store, ("approvers",))
    source.read()
    for status in (400, 410):
        graph.expire_delta_tokens(status=status)
        graph.update_user(ids["bob"], department=f"Ops{status}")
        snap = source.read()
        assert source.info.mode == "resync"
        assert {i.username: i.first("department") for i in snap.identities}["bob"] == f"Ops{status}"
        assert snap.identities == read(cfg.model_copy(update={"delta": False})).identities
    rejected = [s.status for s in graph.requests_to("/v1.0/users/delta") if s.status != 200]
    assert rejected == [400, 410]
    source.close()


def test_full_resync_on_schedule(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    store = MemoryStore()
    cfg = entra_config(full_resync_hours=0.0001)
    source = EntraSource(cfg, store, ())
    source.read()
    state = store.get(state_key(cfg.name))
    state["full_at"] = "2000-01-01T00:00:00+00:00"
    store.put(state_key(cfg.name), state)
    source.read()
    assert source.info.mode == "resync"
    source.close()


def test_429_retry_after_is_honoured(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    graph.fail_next(1, 429, path="/v1.0/users", retry_after=0.4)
    snap = read(entra_config(delta=False))
    assert len(snap.identities) == 4
    calls = graph.requests_to("/v1.0/users")
    assert [c.status for c in calls[:2]] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.4, "the retry came before Retry-After elapsed"


def test_retry_after_is_capped(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    graph.fail_next(1, 429, path="/v1.0/users", retry_after=3600)
    source = EntraSource(entra_config(delta=False, max_retry_after=0.2), None, ())
    waits: list[float] = []
    source.graph.sleep = lambda s: waits.append(s)
    source.read()
    assert waits == [0.2]
    source.close()


def test_503_is_retried_with_backoff(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    graph.fail_next(2, 503, path="/v1.0/users/delta", skip=0)
    source = EntraSource(entra_config(page_size=2), MemoryStore(), ())
    waits: list[float] = []
    source.graph.sleep = lambda s: waits.append(s)
    snap = source.read()
    assert len(snap.identities) == 4 and source.info.retries == 2
    assert len(waits) == 2 and all(0 <= w <= 0.05 for w in waits)
    assert [c.status for c in graph.requests_to("/v1.0/users/delta")][:3] == [503, 503, 200]
    source.close()


def test_page_failing_after_retries_raises_and_keeps_state(graph: GraphServer, entra_config: Make) -> None:
    ids = directory(graph)
    store = MemoryStore()
    cfg = entra_config(page_size=2, max_retries=2)
    read(cfg, store)
    before = dict(store.data)
    graph.update_user(ids["alice"], department="Risk")
    graph.update_user(ids["bob"], department="Risk")
    graph.update_user(ids["carol"], department="Risk")
    graph.fail_next(10, 503, path="/v1.0/users/delta", skip=1)  # the second page keeps failing
    with pytest.raises(SourceUnavailable, match=r"still failing after 2 retries: HTTP 503 serviceNotAvailable"):
        read(cfg, store)
    assert store.data == before, "a failed round must not advance the delta state"


def test_graph_error_body_becomes_clear_message(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    graph.fail_next(
        1, 403, path="/v1.0/users", code="Authorization_RequestDenied", message="Insufficient privileges to complete the operation."
    )
    with pytest.raises(SourceIncomplete) as err:
        read(entra_config(delta=False))
    text = str(err.value)
    assert "HTTP 403 Authorization_RequestDenied: Insufficient privileges to complete the operation." in text
    assert "request-id " in text and "/v1.0/users" in text


def test_token_is_cached_and_refreshed_when_rejected(graph: GraphServer, entra_config: Make) -> None:
    directory(graph)
    source = EntraSource(entra_config(delta=False), None, ("approvers",))
    source.read()
    source.read()
    assert graph.tokens_issued == 1, "msal's cache must serve the second read"
    graph.tokens.clear()  # the server no longer accepts the cached token
    source.read()
    assert graph.tokens_issued == 2
    source.close()


def test_wrong_secret_is_a_clear_error_without_the_secret(
    graph: GraphServer, entra_config: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory(graph)
    monkeypatch.setenv("PROV_TEST_WRONG_SECRET", "wrong-secret-value")
    with pytest.raises(SourceUnavailable) as err:
        read(entra_config(client_secret="env:PROV_TEST_WRONG_SECRET", delta=False))
    text = str(err.value)
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert "wrong-secret-value" not in text and graph.client_secret not in text


def test_certificate_credential(graph: GraphServer, entra_config: Make, tmp_path: Path) -> None:
    directory(graph)
    key_file, thumb, public_key = make_certificate(tmp_path)
    graph.cert_public_key, graph.cert_thumbprint = public_key, thumb
    cert = {"client_secret": None, "certificate_key_file": str(key_file), "certificate_thumbprint": thumb.upper()}
    assert len(read(entra_config(delta=False, **cert)).identities) == 4
    other_key, other_thumb, _ = make_certificate(tmp_path / "..")
    with pytest.raises(SourceUnavailable, match="invalid_client: AADSTS700027"):
        read(entra_config(delta=False, client_secret=None, certificate_key_file=str(other_key), certificate_thumbprint=other_thumb))


def test_incremental_sync_job_warms_the_state(graph: GraphServer, entra_config: Make, tmp_path: Path) -> None:
    directory(graph)
    cfg = entra_config()
    from provisioner.config import Config, PostgresTargetConfig

    full = Config(sources=[cfg], targets=[PostgresTargetConfig(type="postgresql", name="pg", dsn="host=x")])
    store = MemoryStore()
    assert incremental_sync(full, store, ["approvers"])[cfg.name].mode == "resync"
    assert incremental_sync(full, store, ["approvers"])[cfg.name].mode == "delta"


def test_config_rejects_filter_with_delta_and_missing_credentials(tmp_path: Path) -> None:
    base = {"type": "entra", "name": "e", "tenant_id": "t", "client_id": "c"}
    target = {"type": "postgresql", "name": "pg", "dsn": "host=x"}
    with pytest.raises(ConfigError, match=r"sources\[0\].*user_filter cannot be combined with delta"):
        parse_config({"sources": [{**base, "client_secret": "env:X", "user_filter": "a eq 'b'"}], "targets": [target]}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="set client_secret, or certificate_key_file"):
        parse_config({"sources": [base], "targets": [target]}, tmp_path / "c.toml")
