"""Microsoft Entra ID source: users and the groups the rules refer to, from
Microsoft Graph v1.0, read completely or incrementally with delta queries.

* Full read (``delta = false``, or no state store): ``/users`` with ``$select``,
  ``$expand=manager`` and the configured ``$filter``; one paged
  ``transitiveMembers`` call per referenced group (never one request per user).
* Delta read: ``/users/delta`` and ``/groups/delta`` (``members@delta``); the
  delta links and compact records of every user and group are kept in the
  state store under ``entra:<source>``, so an incremental run yields the same
  complete snapshot as a full read.  ``@removed`` users leave the snapshot and
  become leavers through the normal lifecycle.  A rejected delta link (410, or
  ``syncStateNotFound``) or ``full_resync_hours`` since the last full round
  starts a fresh round.

Every page is all-or-nothing: a failure after retries raises SourceUnavailable
before anything is returned or stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from provisioner.config import Config, EntraSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.errors import SourceIncomplete
from provisioner.sources.entra_auth import TokenProvider, make_session
from provisioner.sources.entra_graph import DeltaExpired, GraphClient
from provisioner.sources.entra_records import (
    Membership,
    Record,
    closure,
    described,
    identities,
    is_guid,
    merge_group,
    merge_user,
    user_properties,
)

log = structlog.get_logger(__name__)

STATE_VERSION = 1
ADVANCED_TOKENS = ("endswith(", "not(", " ne ", " in (", "$count", "startswith(", "any(")


class KeyValueStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


def state_key(source: str) -> str:
    return f"entra:{source}"


def needs_advanced_query(user_filter: str) -> bool:
    """Filters Graph only evaluates as advanced queries (``ConsistencyLevel: eventual``)."""
    outside_quotes = "".join(user_filter.split("'")[::2]).lower()
    return any(tok in f" {outside_quotes} " for tok in ADVANCED_TOKENS)


@dataclass
class ReadInfo:
    """How the last read went (for ``sources check``, logs and the bench)."""

    mode: str = ""
    users_changed: int = 0
    users_removed: int = 0
    groups_changed: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class EntraSource:
    def __init__(
        self,
        config: EntraSourceConfig,
        store: KeyValueStore | None = None,
        referenced_groups: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.name = config.name
        self.store = store
        self.referenced = frozenset(g.lower() for g in referenced_groups)
        self.session = make_session(config)
        self.tokens = TokenProvider(config, self.session)
        self.graph = GraphClient(config, self.tokens, self.session)
        self.props = user_properties(config)
        self.info = ReadInfo()

    # ------------------------------------------------------------------ Source protocol

    def read(self) -> SourceSnapshot:
        started = time.perf_counter()
        before = (self.graph.stats.requests, self.graph.stats.retries)
        self.info = ReadInfo()
        if self.config.delta and self.store is not None:
            users, (groups_by_user, missing, ambiguous, count) = self._read_delta(self.store)
        else:
            self.info.mode = "full"
            users, (groups_by_user, missing, ambiguous, count) = self._read_full()
        notes = [f"group {name!r} referenced by the rules does not exist in Entra ID" for name in missing]
        idents = identities(self.config, users, groups_by_user, notes)
        self.info.requests = self.graph.stats.requests - before[0]
        self.info.retries = self.graph.stats.retries - before[1]
        self.info.seconds = time.perf_counter() - started
        self.info.notes = notes
        log.info(
            "entra source read",
            source=self.name,
            mode=self.info.mode,
            identities=len(idents),
            groups=count,
            requests=self.info.requests,
            retries=self.info.retries,
        )
        return SourceSnapshot(
            source=self.name,
            identities=tuple(idents),
            group_count=count,
            complete=True,
            read_at=datetime.now(UTC),
            warnings=tuple(notes),
            ambiguous_groups=ambiguous,
        )

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ full read

    def _users_url(self) -> tuple[str, dict[str, str]]:
        cfg = self.config
        params = {
            "$select": ",".join(self.props),
            "$expand": "manager($select=id,userPrincipalName)",
            "$top": str(cfg.page_size),
        }
        headers: dict[str, str] = {}
        if cfg.user_filter:
            params["$filter"] = cfg.user_filter
            if needs_advanced_query(cfg.user_filter):
                params["$count"] = "true"
                headers["ConsistencyLevel"] = "eventual"
        return self.graph.url("/users", params), headers

    def _read_full(self) -> tuple[dict[str, Record], Membership]:
        url, headers = self._users_url()
        users: dict[str, Record] = {}
        for page in self.graph.pages(url, headers):
            for raw in page["value"]:
                if isinstance(raw, dict) and raw.get("id"):
                    users[str(raw["id"])] = merge_user(None, raw, self.props)
        return users, self._transitive_members()

    def _find_groups(self, name: str) -> list[dict[str, Any]]:
        escaped = name.replace("'", "''")
        prop = "id" if is_guid(name) else "displayName"
        url = self.graph.url("/groups", {"$filter": f"{prop} eq '{escaped}'", "$select": "id,displayName"})
        return [g for g in self.graph.collect(url) if isinstance(g, dict) and g.get("id")]

    def _transitive_members(self) -> Membership:
        """One paged transitiveMembers call per referenced group; a display name several
        groups carry is ambiguous and matches no one (the rule must name the object id)."""
        out: dict[str, set[str]] = {}
        missing: list[str] = []
        ambiguous: dict[str, tuple[str, ...]] = {}
        seen: set[str] = set()
        for name in sorted(self.referenced):
            found = [g for g in self._find_groups(name) if str(g.get("displayName", "")).lower() == name
                     or str(g["id"]).lower() == name]
            if not found:
                missing.append(name)
            if len(found) > 1 and not is_guid(name):
                ambiguous[name] = described(found)
                seen.update(str(g["id"]) for g in found)
                continue
            for group in found:
                gid = str(group["id"])
                seen.add(gid)
                labels = {gid.lower(), str(group.get("displayName") or "").lower()} - {""}
                url = self.graph.url(
                    f"/groups/{gid}/transitiveMembers/microsoft.graph.user",
                    {"$select": "id", "$top": str(self.config.page_size)},
                )
                for member in self.graph.collect(url):
                    if isinstance(member, dict) and member.get("id"):
                        out.setdefault(str(member["id"]), set()).update(labels)
        return out, missing, ambiguous, len(seen)

    # ------------------------------------------------------------------ delta read

    def _fingerprint(self) -> str:
        cfg = self.config
        blob = json.dumps([cfg.graph_url, cfg.tenant_id, self.props], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _usable_state(self, state: Any, now: datetime) -> str | None:
        """Why the stored state cannot continue (None: it can)."""
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            return "no delta state yet"
        if state.get("fp") != self._fingerprint():
            return "selected properties or tenant changed"
        try:
            full_at = datetime.fromisoformat(str(state["full_at"]))
        except (KeyError, ValueError):
            return "no time of the last full round"
        if now - full_at >= timedelta(hours=self.config.full_resync_hours):
            return f"last full round {full_at.isoformat()} is older than full_resync_hours"
        if not state.get("users_link") or not state.get("groups_link"):
            return "no delta link"
        return None

    def _read_delta(self, store: KeyValueStore) -> tuple[dict[str, Record], Membership]:
        now = datetime.now(UTC)
        state = store.get(state_key(self.name))
        why = self._usable_state(state, now)
        result = None
        if why is None:
            try:
                result = self._delta_round(state)
                self.info.mode = "delta"
            except DeltaExpired as exc:
                why = f"delta link rejected ({exc})"
        if result is None:
            log.info("entra full resync", source=self.name, why=why)
            self.info.mode = "resync"
            result = self._delta_round(None)
            full_at = now.isoformat()
        else:
            full_at = str(state["full_at"])
        users, groups, users_link, groups_link = result
        unchanged = self.info.mode == "delta" and not (
            self.info.users_changed or self.info.users_removed or self.info.groups_changed
        )
        if not unchanged:  # an unchanged round keeps the previous links, which stay valid
            self._save(store, users, groups, users_link, groups_link, full_at)
        return users, closure(groups, self.referenced)

    def _save(
        self,
        store: KeyValueStore,
        users: dict[str, Record],
        groups: dict[str, Record],
        users_link: str,
        groups_link: str,
        full_at: str,
    ) -> None:
        store.put(
            state_key(self.name),
            {
                "v": STATE_VERSION,
                "fp": self._fingerprint(),
                "full_at": full_at,
                "users_link": users_link,
                "groups_link": groups_link,
                "users": users,
                "groups": {gid: {"n": g["n"], "m": sorted(g["m"])} for gid, g in groups.items()},
            },
        )

    def _delta_round(
        self, state: Mapping[str, Any] | None
    ) -> tuple[dict[str, Record], dict[str, Record], str, str]:
        """Apply one complete delta round for users and groups to the stored records
        (or to empty records for a fresh round).  Nothing is changed in ``state``."""
        users: dict[str, Record] = dict(state["users"]) if state else {}
        groups: dict[str, Record] = {}
        if state:
            groups = {gid: {"n": g.get("n", ""), "m": set(g.get("m", ()))} for gid, g in state["groups"].items()}
        select = ",".join([*self.props, "manager"])
        users_url = state["users_link"] if state else self.graph.url(
            "/users/delta", {"$select": select, "$top": str(self.config.page_size)}
        )
        users_link = ""
        for page in self.graph.pages(users_url):
            for raw in page["value"]:
                if not isinstance(raw, dict) or not raw.get("id"):
                    continue
                uid = str(raw["id"])
                if "@removed" in raw:
                    if users.pop(uid, None) is not None:
                        self.info.users_removed += 1
                    continue
                users[uid] = merge_user(users.get(uid), raw, self.props)
                self.info.users_changed += 1
            users_link = str(page.get("@odata.deltaLink") or users_link)
        groups_url = state["groups_link"] if state else self.graph.url(
            "/groups/delta", {"$select": "displayName,members"}
        )
        groups_link = ""
        for page in self.graph.pages(groups_url):
            for raw in page["value"]:
                if not isinstance(raw, dict) or not raw.get("id"):
                    continue
                gid = str(raw["id"])
                if "@removed" in raw:
                    groups.pop(gid, None)
                else:
                    groups[gid] = merge_group(groups.get(gid), raw)
                self.info.groups_changed += 1
            groups_link = str(page.get("@odata.deltaLink") or groups_link)
        if not users_link or not groups_link:
            raise SourceIncomplete(f"source {self.name}: a delta round ended without @odata.deltaLink")
        return users, groups, users_link, groups_link


def incremental_sync(cfg: Config, store: KeyValueStore, referenced_groups: Iterable[str] = ()) -> dict[str, ReadInfo]:
    """Run one delta round for every Entra source with ``delta = true`` and keep the
    result in the state store (for the daemon's "source sync" job: the next plan
    then starts from fresh records).  Raises like ``read``."""
    out: dict[str, ReadInfo] = {}
    for scfg in cfg.sources:
        if isinstance(scfg, EntraSourceConfig) and scfg.delta:
            source = EntraSource(scfg, store, referenced_groups)
            try:
                source.read()
            finally:
                source.close()
            out[scfg.name] = source.info
    return out
