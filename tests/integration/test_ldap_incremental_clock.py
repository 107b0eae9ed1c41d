"""Incremental OpenLDAP reads by ``modifyTimestamp`` (no readable ``contextCSN`` /
``entryCSN``: no syncprov, or an ACL that hides them) when one entry carries a timestamp
from the future -- written while the server's clock was ahead (an NTP step back later), or
replicated from a provider whose clock is.  The high-water mark is the newest timestamp
seen, so one such entry moved it past every honest write to come: a leaver marked
terminated afterwards was not read until the next full read (``full_read_every``, 24 h)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from provisioner.sources.ldap import LdapSource
from tests.support.jsonstore import JsonStore, content
from tests.support.slapd import SUFFIX, Slapd

PEOPLE = f"ou=people,{SUFFIX}"
HIDE_CSN = "access to attrs=contextCSN,entryCSN by * none"


def _person(uid: str, **attrs: str) -> tuple[str, dict[str, object]]:
    return f"uid={uid},{PEOPLE}", {
        "objectClass": ["inetOrgPerson", "hrPerson"], "uid": uid, "cn": uid, "sn": uid,
        "departmentNumber": "Trading", "hrStatus": "active", **attrs,
    }  # fmt: skip


def test_an_entry_stamped_in_the_future_does_not_hide_later_changes(slapd_factory: Callable[..., Slapd]) -> None:
    server = slapd_factory(limits=[HIDE_CSN])
    ahead = (datetime.now(UTC) + timedelta(hours=6)).strftime("%Y%m%d%H%M%SZ")
    server.slapadd([_person("alice"), _person("bob"), _person("skewed", modifyTimestamp=ahead)])
    server.start()
    store, cfg = JsonStore(), server.source_config(name="clock")
    first = LdapSource(cfg, store=store, memory=store.memory)
    first.read()
    assert first.last_stats["mode"] == "full"

    server.modify(f"uid=bob,{PEOPLE}", hrStatus="terminated")  # HR terminates bob, now
    source = LdapSource(cfg, store=store, memory=store.memory)
    snap = source.read()
    assert source.last_stats["mode"] == "incremental"
    assert "modifyTimestamp" in source.last_stats["changed_filter"], source.last_stats
    status = {i.username: i.first("status") for i in snap.identities}
    assert status["bob"] == "terminated", f"a leaver was not read: {source.last_stats['changed_filter']}"
    assert content(snap) == content(LdapSource(cfg).read())
