"""Incremental LDAP reads: the in-process copy of the stored snapshot, its compact
encoding, and the deletion-scan schedule (``deletion_scan_every``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from provisioner.config import LdapSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.sources import incremental_state
from provisioner.sources.groups import GroupRecord, UserRecord
from provisioner.sources.incremental import IncrementalReader
from provisioner.sources.incremental_state import decode, encode
from provisioner.sources.ldap import LdapSource
from tests.support.fixtures import LdapOu
from tests.support.jsonstore import JsonStore, content
from tests.support.slapd import Slapd


@pytest.fixture(autouse=True)
def _no_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IncrementalReader, "overlap", timedelta(0))


def _read(cfg: LdapSourceConfig, store: Any) -> tuple[SourceSnapshot, dict[str, Any]]:
    source = LdapSource(cfg, store=store, memory=getattr(store, "memory", None))
    return source.read(), source.last_stats


def test_encoding_round_trips_every_field() -> None:
    users = {
        "uid=a": UserRecord("uid=A", "1", "a", True, {"dept": ("Trading",), "mail": ("a@x", "b@x"), "x": ()}),
        "uid=b": UserRecord("uid=b", "", "b", False, {"title": ("Zürich ✓",)}, ("uid=b: no stable id",)),
    }
    groups = {"cn=g": GroupRecord("cn=G", ("G", "g2"), ("uid=A", "uid=b")), "cn=e": GroupRecord("cn=e", (), ())}
    got_users, got_groups = decode(encode(users, groups))
    assert got_users == users and got_groups == groups
    assert list(got_users) == list(users)  # order kept: the snapshot lists identities in read order


def test_warm_process_serves_the_snapshot_from_memory_and_cold_from_the_store(ldap_ou: LdapOu) -> None:
    a = ldap_ou.add_user("alice", departmentNumber="Trading")
    ldap_ou.add_user("bob", departmentNumber="Ops")
    ldap_ou.add_group("traders", [a])
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    noop, stats = _read(cfg, store)
    assert stats["mode"] == "incremental" and stats["warm"] is True
    assert content(noop) == content(LdapSource(cfg).read())
    store.memory.forget()  # a cold start
    cold, stats = _read(cfg, store)
    assert stats["warm"] is False
    assert content(cold) == content(noop)
    ldap_ou.modify(a, departmentNumber="Risk")
    moved, stats = _read(cfg, store)
    assert stats["warm"] is True and stats["users_changed"] == 1
    assert {i.username: i.first("department") for i in moved.identities} == {"alice": "Risk", "bob": "Ops"}
    assert content(moved) == content(LdapSource(cfg).read())


@pytest.mark.parametrize("share", [10, 10**9], ids=["delta", "base-every-time"])
def test_changes_stored_as_delta_or_new_base_read_back_cold(
    ldap_ou: LdapOu, monkeypatch: pytest.MonkeyPatch, share: int
) -> None:
    monkeypatch.setattr(incremental_state, "DELTA_SHARE", share)
    a = ldap_ou.add_user("alice", departmentNumber="Trading")
    b = ldap_ou.add_user("bob", departmentNumber="Ops")
    ldap_ou.add_group("traders", [a])
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    for step in range(3):
        ldap_ou.modify(b, departmentNumber=f"D{step}")
        if step == 1:
            ldap_ou.delete(a)
            ldap_ou.add_user("carol")
        _read(cfg, store)
        has_delta = any(k.endswith(":delta") for k in store.data)
        assert has_delta == (share == 10)
        cold = JsonStore()
        cold.data = dict(store.data)
        snap, stats = _read(cfg, cold)
        assert stats["mode"] == "incremental" and stats["warm"] is False
        assert content(snap) == content(LdapSource(cfg).read())


def test_inconsistent_stored_state_means_a_full_read(ldap_ou: LdapOu) -> None:
    b = ldap_ou.add_user("bob", departmentNumber="Ops")
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    ldap_ou.modify(b, departmentNumber="Risk")
    _read(cfg, store)
    delta_key = next(k for k in store.data if k.endswith(":delta"))
    del store.data[delta_key]  # as if the process died between writing the delta and the mark
    store.memory.forget()  # a cold start
    snap, stats = _read(cfg, store)
    assert stats == {"mode": "full", "reason": "no stored snapshot"}
    assert snap.identities[0].first("department") == "Risk"


def test_another_process_writing_a_newer_snapshot_is_noticed(ldap_ou: LdapOu) -> None:
    a = ldap_ou.add_user("alice", departmentNumber="Trading")
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    other = JsonStore()  # "another process": its own memory, the same stored rows
    other.data = store.data
    ldap_ou.modify(a, departmentNumber="Risk")
    _read(cfg, other)  # writes a new generation
    snap, stats = _read(cfg, store)
    assert stats["warm"] is False  # our memory holds the older generation: read the store
    assert snap.identities[0].first("department") == "Risk"


def test_deletion_scan_every_delays_deletions_until_the_next_scan(ldap_ou: LdapOu) -> None:
    a = ldap_ou.add_user("alice")
    ldap_ou.add_user("bob")
    store, cfg = JsonStore(), ldap_ou.config(deletion_scan_every="1h")
    _read(cfg, store)
    ldap_ou.delete(a)
    snap, stats = _read(cfg, store)
    assert stats["deletion_scan"] is False and stats["users_gone"] == 0
    assert {i.username for i in snap.identities} == {"alice", "bob"}  # the documented leaver latency
    store.data = {k: v.replace('"scan_at": "20', '"scan_at": "19') for k, v in store.data.items()}
    snap, stats = _read(cfg, store)
    assert stats["deletion_scan"] is True and stats["users_gone"] == 1
    assert {i.username for i in snap.identities} == {"bob"}
    assert content(snap) == content(LdapSource(cfg).read())
    every_run = ldap_ou.config()
    assert every_run.deletion_scan_every == 0
    assert ldap_ou.config(deletion_scan_every="30m").deletion_scan_every == 1800


def _count_searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every entry search the source makes (the contextCSN look-up is not one)."""
    bases: list[str] = []
    search = LdapSource.search

    def counted(self: LdapSource, conn: Any, base: str, *args: Any, **kw: Any) -> Any:
        bases.append(base)
        return search(self, conn, base, *args, **kw)

    monkeypatch.setattr(LdapSource, "search", counted)
    return bases


def test_quiet_directory_is_not_searched_and_a_later_deletion_is_found(
    ldap_ou: LdapOu, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = ldap_ou.add_user("alice", departmentNumber="Trading")
    ldap_ou.add_user("bob", departmentNumber="Ops")
    store, cfg = JsonStore(), ldap_ou.config()
    first, _ = _read(cfg, store)
    searches = _count_searches(monkeypatch)
    again, stats = _read(cfg, store)
    assert stats["quiet"] is True and stats["deletion_scan"] is False
    assert searches == []  # nothing written since the last read: no entry is asked for
    assert again is first or content(again) == content(first)
    ldap_ou.delete(a)
    after, stats = _read(cfg, store)
    assert stats["quiet"] is False and stats["deletion_scan"] is True and stats["users_gone"] == 1
    assert {i.username for i in after.identities} == {"bob"}
    assert searches  # the write moved contextCSN: changed entries and the id-only scan were asked for


def test_due_deletion_scan_is_skipped_only_while_nothing_was_written(ldap_ou: LdapOu) -> None:
    ldap_ou.add_user("alice")
    b = ldap_ou.add_user("bob")
    store, cfg = JsonStore(), ldap_ou.config(deletion_scan_every="1h")
    _read(cfg, store)

    def due() -> None:
        store.data = {k: v.replace('"scan_at": "20', '"scan_at": "19') for k, v in store.data.items()}

    due()
    _, stats = _read(cfg, store)
    assert stats["quiet"] is True and stats["deletion_scan"] is False  # due, but nothing could be gone
    ldap_ou.modify(b, departmentNumber="Risk")  # any write, even one that deletes nothing
    due()
    _, stats = _read(cfg, store)
    assert stats["quiet"] is False and stats["deletion_scan"] is True and stats["users_gone"] == 0


def test_a_group_change_keeps_the_identities_of_everyone_it_does_not_touch(ldap_ou: LdapOu) -> None:
    """A mover's group change must not rebuild everyone: the desired state and the diff
    memo reuse what they computed per identity object (issue 19, the warm churn run)."""
    a = ldap_ou.add_user("alice", departmentNumber="Trading")
    b = ldap_ou.add_user("bob", departmentNumber="Trading")
    c = ldap_ou.add_user("carol", departmentNumber="Ops")
    traders = ldap_ou.add_group("traders", [a, b])
    ldap_ou.add_group("ops", [c])
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    before, _ = _read(cfg, store)
    ldap_ou.modify(traders, member=[a])  # bob leaves the group; alice stays, carol is elsewhere
    after, stats = _read(cfg, store)
    assert stats["warm"] is True and stats["groups_changed"] == 1
    old = {i.username: i for i in before.identities}
    new = {i.username: i for i in after.identities}
    assert new["alice"] is old["alice"] and new["carol"] is old["carol"]
    assert new["bob"] is not old["bob"] and "traders" not in new["bob"].groups
    assert content(after) == content(LdapSource(cfg).read())


def test_changed_entries_are_asked_for_by_entry_csn_not_by_the_second(ldap_ou: LdapOu) -> None:
    """A bulk load writes thousands of entries within the same seconds; the next change must
    not re-read them all (modifyTimestamp's 1 s granularity and overlap did: issue 19)."""
    users = ldap_ou.add_users({f"u{i:02d}": {"departmentNumber": "Ops"} for i in range(30)})
    ldap_ou.add_group("ops", users[:3])  # the last write before the full read
    store, cfg = JsonStore(), ldap_ou.config()
    _read(cfg, store)
    ldap_ou.modify(users[7], departmentNumber="Risk")
    moved, stats = _read(cfg, store)
    assert stats["changed_filter"].startswith("(entryCSN>=")
    assert stats["users_read"] == 1 and stats["users_changed"] == 1
    assert content(moved) == content(LdapSource(cfg).read())
    _, stats = _read(cfg, store)  # nothing written since: quiet, no search
    assert stats["quiet"] is True and stats["users_read"] == 0


class HiddenCsnSlapd(Slapd):
    """A directory whose readers may not see ``entryCSN`` (nor search by it)."""

    def _config_text(self) -> str:
        hidden = "access to attrs=entryCSN by * none\naccess to * by users read by * none"
        return super()._config_text().replace("access to * by users read by * none", hidden)


def test_a_reader_that_cannot_see_entry_csn_keeps_the_timestamp_search() -> None:
    server = HiddenCsnSlapd()
    try:
        server.start()
        ou = LdapOu(server)
        a = ou.add_user("alice", departmentNumber="Trading")
        ou.add_user("bob", departmentNumber="Ops")
        store, cfg = JsonStore(), ou.config()
        _read(cfg, store)
        ou.modify(a, departmentNumber="Risk")
        moved, stats = _read(cfg, store)
        assert stats["changed_filter"].startswith("(modifyTimestamp>=") and stats["users_changed"] == 1
        assert content(moved) == content(LdapSource(cfg).read())
    finally:
        server.cleanup()
