"""A local, real-shaped Microsoft identity platform + Microsoft Graph v1.0 server.

HTTPS on 127.0.0.1 (a throw-away CA from tests.support.certs), so msal talks to
it through its own HTTP layer: OIDC discovery, the client-credentials token
endpoint (client secret, or a certificate's signed client assertion), and the
Graph endpoints the Entra source uses: /users (``$select``, ``$top``,
``$filter`` with ``eq``/``and`` and ``endswith`` as an advanced query,
``$count``, ``$expand=manager``, opaque ``$skiptoken`` paging), /users/delta,
/groups, /groups/delta (``members@delta``), transitiveMembers.  Bearer tokens
are checked.  Faults are programmable: the next N matching requests answer
429 with Retry-After, 503, and delta tokens can be expired.  The in-memory
directory is changed by the test between syncs.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.certs import make_ca_and_server
from tests.support.graph_routes import GROUP_TYPE, USER_TYPE, Cursor, Fault, Seen, handler


class GraphServer:
    def __init__(self, workdir: Path, *, tenant: str = "", client_id: str = "", client_secret: str = "s3cret-value") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file = make_ca_and_server(workdir)
        self.tenant = tenant or str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret
        self.cert_public_key: Any = None
        self.cert_thumbprint: str = ""
        self.token_ttl = 3600
        self.lock = threading.RLock()
        self.version = 0
        self.users: dict[str, dict[str, Any]] = {}
        self.user_tombs: dict[str, tuple[int, str]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_tombs: dict[str, int] = {}
        self.tokens: dict[str, float] = {}
        self.delta_tokens: dict[str, tuple[int, int, str, int]] = {}
        self.epoch = 0
        self.expired_status = 400
        self.cursors: dict[str, Cursor] = {}
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.tokens_issued = 0
        self._httpd: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> GraphServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(self))
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.workdir / "server.pem", self.workdir / "server.key")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._httpd = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def source_toml(self, name: str, **extra: Any) -> str:
        """A ``[[sources]]`` table for this server (the secret by env reference)."""
        data = {
            "name": name,
            "type": "entra",
            "tenant_id": self.tenant,
            "client_id": self.client_id,
            "authority_host": self.url,
            "graph_url": self.url,
            "ca_file": str(self.ca_file),
            "backoff_base": 0.05,
            **extra,
        }
        return "[[sources]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items() if v is not None)

    # ------------------------------------------------------------------ directory
    def _bump(self) -> int:
        self.version += 1
        return self.version

    def add_user(self, upn: str, **props: Any) -> str:
        with self.lock:
            uid = str(props.pop("id", None) or uuid.uuid4())
            v = self._bump()
            user = {"id": uid, "userPrincipalName": upn, "accountEnabled": True, "mailNickname": upn.split("@")[0], **props}
            user["_pv"] = dict.fromkeys(user, v)
            user["_v"] = v
            self.users[uid] = user
            return uid

    def update_user(self, uid: str, **props: Any) -> None:
        with self.lock:
            v = self._bump()
            user = self.users[uid]
            for key, value in props.items():
                user[key] = value
                user["_pv"][key] = v
            user["_v"] = v

    def set_manager(self, uid: str, manager: str | None) -> None:
        with self.lock:
            user = self.users[uid]
            old = user.get("_manager")
            user["_manager"] = manager
            user["_oldmgr"] = old if manager is None else None
            user["_mgrv"] = user["_v"] = self._bump()

    def delete_user(self, uid: str, reason: str = "deleted") -> None:
        with self.lock:
            for report in [u for u, rec in self.users.items() if rec.get("_manager") == uid]:
                self.set_manager(report, None)  # Graph drops the manager reference with the manager
            del self.users[uid]
            v = self._bump()
            self.user_tombs[uid] = (v, reason)
            for gid, group in self.groups.items():
                if uid in group["members"]:
                    self._member_change(gid, uid, added=False, v=v)

    def add_group(self, name: str, members: list[str] = ()) -> str:  # type: ignore[assignment]
        with self.lock:
            gid = str(uuid.uuid4())
            v = self._bump()
            self.groups[gid] = {"id": gid, "displayName": name, "members": set(), "_log": {}, "_v": v}
            for m in members:
                self._member_change(gid, m, added=True, v=v)
            return gid

    def _member_change(self, gid: str, member: str, *, added: bool, v: int) -> None:
        group = self.groups[gid]
        (group["members"].add if added else group["members"].discard)(member)
        group["_log"][member] = (v, added)

    def add_member(self, gid: str, member: str) -> None:
        with self.lock:
            self._member_change(gid, member, added=True, v=self._bump())

    def remove_member(self, gid: str, member: str) -> None:
        with self.lock:
            self._member_change(gid, member, added=False, v=self._bump())

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        count: int,
        status: int = 429,
        *,
        path: str = "/v1.0/",
        retry_after: float | None = None,
        skip: int = 0,
        code: str = "",
        message: str = "",
    ) -> None:
        """The next ``count`` Graph requests under ``path`` (after letting ``skip`` pass) fail."""
        code = code or {429: "TooManyRequests", 503: "serviceNotAvailable"}.get(status, "generalException")
        with self.lock:
            self.faults.append(Fault(path, status, count, retry_after, code, message or Fault.message, skip))

    def expire_delta_tokens(self, status: int = 400) -> None:
        """Every delta token issued so far is rejected (400 syncStateNotFound, or 410 resyncRequired)."""
        with self.lock:
            self.epoch += 1
            self.expired_status = status

    def requests_to(self, prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    # ------------------------------------------------------------------ representations
    def _user_json(self, user: dict[str, Any], select: list[str], since: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prop in select:
            if prop == "manager":
                continue
            if since is not None and user["_pv"].get(prop, 0) <= since and prop != "id":
                continue
            out[prop] = user.get(prop)
        return out

    def _manager_delta(self, user: dict[str, Any], since: int | None) -> list[dict[str, Any]] | None:
        if since is not None and user.get("_mgrv", 0) <= since:
            return None
        if user.get("_manager"):
            return [{"@odata.type": USER_TYPE, "id": user["_manager"]}]
        if user.get("_oldmgr") and since is not None:
            return [{"@odata.type": USER_TYPE, "id": user["_oldmgr"], "@removed": {"reason": "deleted"}}]
        return None if since is not None else []

    def _member_ref(self, member: str, removed: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"@odata.type": GROUP_TYPE if member in self.groups else USER_TYPE, "id": member}
        if removed:
            ref["@removed"] = {"reason": "deleted"}
        return ref


def thumbprint(cert_der: bytes) -> str:
    return hashlib.sha1(cert_der).hexdigest()
