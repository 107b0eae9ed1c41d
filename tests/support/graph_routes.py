"""Request handling of the local Graph server (tests.support.graph_server):
OIDC discovery, the token endpoint, and the Graph v1.0 routes with their
real response shapes (paging, delta links, ``@removed``, error bodies)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jwt

if TYPE_CHECKING:
    from tests.support.graph_server import GraphServer

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
_EQ = re.compile(r"^\s*(\w+)\s+eq\s+('(?:[^']|'')*'|true|false)\s*$", re.IGNORECASE)
_ENDSWITH = re.compile(r"^\s*endswith\((\w+),\s*'((?:[^']|'')*)'\)\s*$", re.IGNORECASE)


@dataclass
class Fault:
    path: str
    status: int
    remaining: int
    retry_after: float | None = None
    code: str = ""
    message: str = "Injected fault: please retry later."
    skip: int = 0


@dataclass
class Seen:
    at: float
    method: str
    path: str
    query: str
    status: int


@dataclass
class Cursor:
    items: list[dict[str, Any]]
    top: int
    end: dict[str, Any] = field(default_factory=dict)


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _inner() -> dict[str, str]:
    rid = str(uuid.uuid4())
    return {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": rid, "client-request-id": rid}


def _unquote(literal: str) -> Any:
    if literal.lower() in ("true", "false"):
        return literal.lower() == "true"
    return literal[1:-1].replace("''", "'")


def _filter(expr: str, advanced: bool) -> Any:
    """A predicate for ``a eq 'x' and b eq 'y'`` / ``endswith(p,'x')`` (advanced only)."""
    tests = []
    for clause in re.split(r"\s+and\s+", expr.strip(), flags=re.IGNORECASE):
        m = _EQ.match(clause)
        if m:
            prop, want = m[1], _unquote(m[2])
            tests.append(lambda o, p=prop, w=want: (o.get(p).lower() == w.lower()) if isinstance(w, str) and isinstance(o.get(p), str) else o.get(p) == w)
            continue
        m = _ENDSWITH.match(clause)
        if m:
            if not advanced:
                raise GraphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'.")
            prop, suffix = m[1], m[2].replace("''", "'").lower()
            tests.append(lambda o, p=prop, s=suffix: str(o.get(p) or "").lower().endswith(s))
            continue
        raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported query: {clause!r}")
    return lambda obj: all(t(obj) for t in tests)


def handler(srv: GraphServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; odata.metadata=minimal; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            parts = urlsplit(self.path)
            with srv.lock:
                srv.seen.append(Seen(time.monotonic(), self.command, parts.path, parts.query, status))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if parts.path == f"/{srv.tenant}/v2.0/.well-known/openid-configuration":
                base = f"{srv.url}/{srv.tenant}"
                return self._send(200, {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "tenant_region_scope": "EU",
                })
            try:
                self._check_bearer()
                self._fault(parts.path)
                with srv.lock:
                    status, body = _route(srv, parts.path, query, dict(self.headers.items()))
                self._send(status, body)
            except GraphError as exc:
                self._send(exc.status, {"error": {"code": exc.code, "message": exc.message, "innerError": _inner()}}, exc.headers)

        def _check_bearer(self) -> None:
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            with srv.lock:
                expiry = srv.tokens.get(token)
            if not token:
                raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
            if expiry is None or expiry < time.time():
                raise GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")

        def _fault(self, path: str) -> None:
            with srv.lock:
                for fault in srv.faults:
                    if fault.remaining > 0 and path.startswith(fault.path):
                        if fault.skip > 0:
                            fault.skip -= 1
                            return
                        fault.remaining -= 1
                        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                        raise GraphError(fault.status, fault.code, fault.message, headers)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != f"/{srv.tenant}/oauth2/v2.0/token":
                return self._send(404, {"error": {"code": "NotFound", "message": "no such endpoint", "innerError": _inner()}})
            status, body = _token(srv, form)
            self._send(status, body)

    return Handler


def _aad_error(error: str, code: int, text: str) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}\r\nTimestamp: {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [code],
        "timestamp": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }


def _token(srv: GraphServer, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if form.get("grant_type") != "client_credentials":
        return 400, _aad_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    if form.get("client_id") != srv.client_id:
        return 400, _aad_error("unauthorized_client", 700016, f"Application with identifier '{form.get('client_id')}' was not found in the directory.")
    if not form.get("scope", "").endswith("/.default"):
        return 400, _aad_error("invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed.")
    if "client_assertion" in form:
        if srv.cert_public_key is None or not _assertion_ok(srv, form["client_assertion"]):
            return 401, _aad_error("invalid_client", 700027, "Client assertion failed signature validation.")
    elif form.get("client_secret") != srv.client_secret:
        return 401, _aad_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
    token = secrets.token_urlsafe(32)
    with srv.lock:
        srv.tokens[token] = time.time() + srv.token_ttl
        srv.tokens_issued += 1
    return 200, {"token_type": "Bearer", "expires_in": srv.token_ttl, "ext_expires_in": srv.token_ttl, "access_token": token}


def _assertion_ok(srv: GraphServer, assertion: str) -> bool:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, srv.cert_public_key, algorithms=["RS256", "PS256"], options={"verify_aud": False})
    except jwt.PyJWTError:
        return False
    x5t = header.get("x5t", "")
    thumb = base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex() if x5t else ""
    return thumb.lower() == srv.cert_thumbprint.lower() and claims.get("iss") == srv.client_id and claims.get("sub") == srv.client_id


# ---------------------------------------------------------------------- routing


def _page(srv: GraphServer, base: str, items: list[dict[str, Any]], top: int, end: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cursor = Cursor(items, top, end or {})
    return _next_page(srv, base, cursor, extra or {})


def _next_page(srv: GraphServer, base: str, cursor: Cursor, extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": f"{srv.url}/v1.0/$metadata#{base.rsplit('/', 1)[-1]}", **extra}
    body["value"] = cursor.items[: cursor.top]
    rest = cursor.items[cursor.top :]
    if rest:
        token = secrets.token_urlsafe(24)
        srv.cursors[token] = Cursor(rest, cursor.top, cursor.end)
        body["@odata.nextLink"] = f"{srv.url}{base}?$skiptoken={token}"
    else:
        body.update(cursor.end)
    return body


def _select(query: dict[str, str], default: list[str]) -> list[str]:
    raw = query.get("$select")
    return ["id", *[p for p in raw.split(",") if p and p != "id"]] if raw else default


def _top(query: dict[str, str], default: int = 100) -> int:
    try:
        return max(1, min(999, int(query.get("$top", default))))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $top") from exc


def _route(srv: GraphServer, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    if "$skiptoken" in query:
        cursor = srv.cursors.pop(query["$skiptoken"], None)
        if cursor is None:
            raise GraphError(400, "Directory_ExpiredPageToken", "The specified page token value has expired and can no longer be included in your request.")
        return 200, _next_page(srv, path, cursor, {})
    if path == "/v1.0/users":
        return 200, _users(srv, query, headers)
    if path == "/v1.0/users/delta":
        return 200, _delta(srv, "users", path, query)
    if path == "/v1.0/groups/delta":
        return 200, _delta(srv, "groups", path, query)
    if path == "/v1.0/groups":
        advanced = headers.get("ConsistencyLevel", "").lower() == "eventual"
        pred = _filter(query["$filter"], advanced) if "$filter" in query else (lambda g: True)
        select = _select(query, ["id", "displayName"])
        items = [{p: g.get(p) for p in select} for g in srv.groups.values() if pred(g)]
        return 200, _page(srv, path, items, _top(query))
    m = re.fullmatch(r"/v1\.0/groups/([^/]+)/transitiveMembers/microsoft\.graph\.user", path)
    if m:
        if m[1] not in srv.groups:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{m[1]}' does not exist or one of its queried reference-property objects are not present.")
        users, seen, stack = set(), {m[1]}, [m[1]]
        while stack:
            for member in srv.groups[stack.pop()]["members"]:
                if member in srv.groups and member not in seen:
                    seen.add(member)
                    stack.append(member)
                elif member in srv.users:
                    users.add(member)
        select = _select(query, ["id", "userPrincipalName"])
        items = [{"@odata.type": USER_TYPE, **{p: srv.users[u].get(p) for p in select}} for u in sorted(users)]
        return 200, _page(srv, path, items, _top(query))
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")


def _users(srv: GraphServer, query: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    advanced = headers.get("ConsistencyLevel", "").lower() == "eventual"
    if query.get("$count") == "true" and not advanced:
        raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
    pred = _filter(query["$filter"], advanced) if "$filter" in query else (lambda u: True)
    select = _select(query, ["id", "displayName", "userPrincipalName", "mail"])
    expand = query.get("$expand", "")
    top = _top(query)
    if expand:
        if not expand.startswith("manager"):
            raise GraphError(400, "Request_BadRequest", f"Invalid $expand {expand!r}")
        top = min(top, 100)  # $expand on directory objects returns at most 100 per page
    items = []
    for user in sorted(srv.users.values(), key=lambda u: u["id"]):
        if not pred(user):
            continue
        item = srv._user_json(user, select)
        mgr = user.get("_manager")
        if expand and mgr in srv.users:
            item["manager"] = {"@odata.type": USER_TYPE, "id": mgr, "userPrincipalName": srv.users[mgr]["userPrincipalName"]}
        items.append(item)
    extra = {"@odata.count": len(items)} if query.get("$count") == "true" else {}
    return _page(srv, "/v1.0/users", items, top, extra=extra)


def _delta(srv: GraphServer, kind: str, path: str, query: dict[str, str]) -> dict[str, Any]:
    since: int | None = None
    select_raw = query.get("$select", "")
    top = _top(query, 100)
    if "$deltatoken" in query:
        state = srv.delta_tokens.get(query["$deltatoken"])
        if state is None or state[0] != srv.epoch:
            if srv.expired_status == 410:
                raise GraphError(410, "resyncRequired", "Resync required. Replace any local items with the server's version (including deletes).")
            raise GraphError(400, "syncStateNotFound", "The sync state generation is not found. The delta token is expired and data must be synchronized again.")
        _, since, select_raw, top = state
    version = srv.version
    items: list[dict[str, Any]] = []
    if kind == "users":
        select = ["id", *[p for p in select_raw.split(",") if p and p != "id"]] if select_raw else ["id", "displayName", "userPrincipalName"]
        for user in sorted(srv.users.values(), key=lambda u: u["id"]):
            if since is not None and user["_v"] <= since:
                continue
            item = srv._user_json(user, select, since)
            if "manager" in select:
                mgr = srv._manager_delta(user, since)
                if mgr is not None:
                    item["manager@delta"] = mgr
            items.append(item)
        if since is not None:
            items += [{"id": uid, "@removed": {"reason": reason}} for uid, (v, reason) in sorted(srv.user_tombs.items()) if v > since]
    else:
        for group in sorted(srv.groups.values(), key=lambda g: g["id"]):
            changes = [(m, added) for m, (v, added) in sorted(group["_log"].items()) if since is None or v > since]
            if since is not None and group["_v"] <= since and not changes:
                continue
            item: dict[str, Any] = {"@odata.type": GROUP_TYPE, "id": group["id"], "displayName": group["displayName"]}
            if since is None:
                item["members@delta"] = [srv._member_ref(m) for m in sorted(group["members"])]
            else:
                item["members@delta"] = [srv._member_ref(m, removed=not added) for m, added in changes]
            items.append(item)
        if since is not None:
            items += [{"id": gid, "@removed": {"reason": "deleted"}} for gid, v in sorted(srv.group_tombs.items()) if v > since]
    token = secrets.token_urlsafe(24)
    srv.delta_tokens[token] = (srv.epoch, version, select_raw, top)
    end = {"@odata.deltaLink": f"{srv.url}{path}?$deltatoken={token}"}
    return _page(srv, path, items, top, end=end)


