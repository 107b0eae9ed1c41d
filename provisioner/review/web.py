"""The reviewer web page: ``provisioner review serve`` (and the daemon, when configured).

A small WSGI application on the standard library's server, loopback by default
(a TLS-terminating reverse proxy in front in production).  Reviewers sign in with
their directory credentials (LDAP simple bind over TLS, :mod:`provisioner.sources.ldap_auth`)
or, for Entra ID, through a header set by a trusted reverse proxy.  Sessions live
on the server (random ids in an HttpOnly, SameSite=Strict, Secure cookie; a new id
at sign-in), end after ``[review] idle_timeout`` without a request, and every form
carries the session's CSRF token.  A reviewer sees and decides only the items
assigned (or delegated) to them; a decision on one's own access is refused.
Every decision, delegation and sign-off goes through :mod:`provisioner.review.campaign`
into the audit trail; a signed-off campaign is frozen.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from provisioner.config import Config
from provisioner.core.governance.review import Decision, ItemState, assignee, decision_problem, self_review
from provisioner.core.privileges.spec import PrivilegeCatalog
from provisioner.engine.context import RunContext
from provisioner.errors import ProvisionerError
from provisioner.logs import log
from provisioner.review import campaign as lifecycle
from provisioner.review.store import CampaignError, ReviewStore
from provisioner.review.webparts import (
    COOKIE,
    Response,
    Session,
    Sessions,
    allows,
    flash,
    low,
    page,
    read_form,
    same_origin,
    session_cookie,
)
from provisioner.review.worksheets import e
from provisioner.store.state import StateStore

Authenticate = Callable[[str, str], str]
"""(username, password) -> the directory username; raises ProvisionerError when refused."""
Clock = Callable[[], datetime]

class ReviewWeb:
    """The WSGI application."""

    def __init__(
        self,
        cfg: Config,
        store: StateStore,
        authenticate: Authenticate | None,
        privileges: PrivilegeCatalog,
        clock: Clock | None = None,
        user_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.rs = ReviewStore(store)
        self.authenticate = authenticate
        self.privileges = privileges
        self.clock = clock or (lambda: datetime.now(UTC))
        self.user_exists = user_exists
        self.sessions = Sessions(cfg.review.idle_timeout)
        self._lock = threading.Lock()  # one request at a time against the store (reviewer traffic is small)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        now = self.clock()
        sid, session, expired = self.sessions.get(session_cookie(environ.get("HTTP_COOKIE", "")), now)
        try:
            with self._lock:
                resp = self.route(environ, sid, session, expired, now)
        except Exception:  # never a traceback to the browser; logged without the request body
            log.exception("review_web_error", path=environ.get("PATH_INFO", ""))
            resp = Response(HTTPStatus.INTERNAL_SERVER_ERROR, page("Error", "<p>Internal error; see the log.</p>"))
        cookies = resp.cookies or (self.cookie(sid),)
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy",
             "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"),  # "no-referrer" makes browsers send Origin: null
            *[("Set-Cookie", c) for c in cookies],
        ]
        if self.cfg.review.secure_cookies:
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        if resp.location:
            headers.append(("Location", resp.location))
        body = resp.body.encode("utf-8")
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{resp.status.value} {resp.status.phrase}", headers)
        return [body]

    def cookie(self, sid: str) -> str:
        secure = "; Secure" if self.cfg.review.secure_cookies else ""
        return f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict{secure}"

    # ------------------------------------------------------------------ routing

    def route(self, environ: dict[str, Any], sid: str, s: Session, expired: bool, now: datetime) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if expired:
            s.flash.append(("info", "Your session ended after a period without activity; sign in again."))
        user = s.user or self.proxy_user(environ)
        if method == "POST":
            form = read_form(environ)
            if form is None:
                return Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, page("Too large", "<p>Request too large.</p>"))
            if not same_origin(environ) or not hmac.compare_digest(form.get("csrf", ""), s.csrf):
                log.warning("review_web_csrf_refused", path=path, user=user)
                return Response(HTTPStatus.FORBIDDEN, page("Refused", "<h1>Refused</h1><p class=\"msg error\">"
                                "The form's security token is missing or wrong (CSRF protection). Reload the "
                                "page and try again.</p>"))
            if path == "/login":
                return self.login(sid, s, form, now)
            if path == "/logout":
                self.sessions.drop(sid)
                return Response(HTTPStatus.SEE_OTHER, location="/login", cookies=(self.cookie(""),))
            if not user:
                return Response(HTTPStatus.SEE_OTHER, location="/login")
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "campaign":
                return self.act(parts[1], parts[2], user, s, form, now)
            return Response(HTTPStatus.NOT_FOUND, page("Not found", "<p>Not found.</p>"))
        if path == "/login":
            return Response(HTTPStatus.OK, self.login_page(s))
        if not user:
            return Response(HTTPStatus.SEE_OTHER, location="/login")
        if path == "/":
            return Response(HTTPStatus.OK, self.home(user, s))
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "campaign" and self.rs.exists(parts[1]):
            return Response(HTTPStatus.OK, self.campaign_page(parts[1], user, s, now))
        return Response(HTTPStatus.NOT_FOUND, page("Not found", "<p>Not found.</p>"))

    def proxy_user(self, environ: Mapping[str, Any]) -> str:
        """The user a trusted reverse proxy vouches for (Entra ID sign-in), or empty."""
        header = self.cfg.review.trusted_header
        if not header or environ.get("REMOTE_ADDR") not in self.cfg.review.trusted_proxies:
            return ""
        return str(environ.get("HTTP_" + header.upper().replace("-", "_"), "")).strip()

    # ------------------------------------------------------------------ sign-in

    def login(self, sid: str, s: Session, form: Mapping[str, str], now: datetime) -> Response:
        username, password = form.get("username", "").strip(), form.get("password", "")
        if self.authenticate is None:
            s.flash.append(("error", "Sign-in by password is not configured here (trusted proxy only)."))
            return Response(HTTPStatus.SEE_OTHER, location="/login")
        try:
            who = self.authenticate(username, password)
        except ProvisionerError as exc:
            log.warning("review_sign_in_refused", username=username, why=type(exc).__name__)
            s.flash.append(("error", "Sign-in refused: wrong username or password."
                            if "password" in str(exc) else f"Sign-in failed: {exc}"))
            return Response(HTTPStatus.SEE_OTHER, location="/login")
        new, _ = self.sessions.rotate(sid, who, now)
        log.info("review_sign_in", user=who)
        return Response(HTTPStatus.SEE_OTHER, location="/", cookies=(self.cookie(new),))

    def login_page(self, s: Session) -> str:
        body = (
            "<main><h1>Access review: sign in</h1>" + flash(s)
            + "<p class=\"meta\">Sign in with your directory (LDAP) username and password.</p>"
            "<form method=\"post\" action=\"/login\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{e(s.csrf)}\">"
            "<p><label>Username<br><input type=\"text\" name=\"username\" id=\"username\" autocomplete=\"username\">"
            "</label></p><p><label>Password<br><input type=\"password\" name=\"password\" id=\"password\" "
            "autocomplete=\"current-password\"></label></p><p><button type=\"submit\" id=\"sign-in\">Sign in"
            "</button></p></form></main>"
        )
        return page("Sign in - access review", body)

    # ------------------------------------------------------------------ pages

    def mine(self, campaign: str, user: str) -> list[ItemState]:
        dele = self.rs.delegations(campaign)
        me = user.casefold()
        return [st for st in self.rs.states(campaign) if assignee(st.item, dele).casefold() == me]

    def home(self, user: str, s: Session) -> str:
        rows = []
        owner = self.is_owner(user)
        for c in self.rs.list_campaigns():
            mine = self.mine(c, user)
            if mine or owner:
                done = sum(1 for st in mine if st.decision)
                state = "signed off" if self.rs.frozen(c) else "open"
                rows.append(f"<tr><td><a href=\"/campaign/{quote(c)}\">{e(c)}</a></td><td>{state}</td>"
                            f"<td>{done} of {len(mine)} decided</td></tr>")
        table = ("<table><thead><tr><th>campaign</th><th>state</th><th>your items</th></tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>") if rows else "<p>No access review is waiting for you.</p>"
        return page("Access reviews", self.header(user, s) + "<main><h1>Access reviews</h1>" + flash(s) + table
                    + "</main>")

    def header(self, user: str, s: Session) -> str:
        return (f"<header><span>Access review &middot; signed in as <b id=\"who\">{e(user)}</b></span>"
                f"<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{e(s.csrf)}\">"
                "<button type=\"submit\" id=\"sign-out\">Sign out</button></form></header>")

    def is_owner(self, user: str) -> bool:
        return user.casefold() in {o.casefold() for o in self.cfg.review.owners}

    def campaign_page(self, campaign: str, user: str, s: Session, now: datetime) -> str:
        mine = self.mine(campaign, user)
        life = self.rs.lifecycle(campaign)
        frozen = life["signed_off_at"] is not None
        csrf = f"<input type=\"hidden\" name=\"csrf\" value=\"{e(s.csrf)}\">"
        done = sum(1 for st in mine if st.decision)
        due = life["due_at"]
        overdue = due is not None and now > due and not frozen
        parts = [self.header(user, s), "<main>", f"<h1>Access review {e(campaign)}</h1>", flash(s)]
        state = (f"<span class=\"ok\">signed off by {e(life['signed_off_by'])} on "
                 f"{e(life['signed_off_at'].isoformat()[:16])}; decisions are frozen</span>" if frozen
                 else f"due {e(due.date().isoformat()) if due else 'not set'}"
                 + (" <span class=\"bad\">(overdue: open items are escalated to the role owners)</span>"
                    if overdue else ""))
        parts.append(f"<p class=\"meta\" id=\"state\">Campaign {state}.</p>")
        parts.append(f"<p id=\"progress\">Your progress: <progress max=\"{len(mine)}\" value=\"{done}\"></progress> "
                     f"{done} of {len(mine)} decided.</p>")
        if not frozen and any(not st.decision and low(st) and not self_review(st.item, user) for st in mine):
            parts.append(f"<form method=\"post\" action=\"/campaign/{quote(campaign)}/bulk-keep\">{csrf}"
                         "<button type=\"submit\" id=\"bulk-keep\">Keep every open low-sensitivity item</button>"
                         "</form>")
        by_person: dict[str, list[ItemState]] = {}
        for st in sorted(mine, key=lambda x: (x.item.identity.casefold(), x.item.target, x.item.access)):
            by_person.setdefault(st.item.identity, []).append(st)
        for person, states in by_person.items():
            parts.append(f"<h2>{e(person)} <span class=\"meta\">({len(states)} item(s))</span></h2>")
            parts.append(self.person_table(campaign, user, states, csrf, frozen))
        if not mine:
            parts.append("<p>No item of this campaign is assigned to you.</p>")
        if not frozen:
            parts.append(
                f"<h2>Delegate</h2><form method=\"post\" action=\"/campaign/{quote(campaign)}/delegate\">{csrf}"
                "<p class=\"meta\">Hand all your items of this campaign to another reviewer (recorded).</p>"
                "<input type=\"text\" name=\"to\" id=\"delegate-to\" placeholder=\"directory username\"> "
                "<input type=\"text\" name=\"comment\" id=\"delegate-comment\" placeholder=\"why\"> "
                "<button type=\"submit\" id=\"delegate\">Delegate</button></form>")
        if self.is_owner(user):
            parts.append(self.owner_section(campaign, csrf, frozen))
        parts.append("</main>")
        return page(f"Access review {campaign}", "".join(parts))

    def person_table(self, campaign: str, user: str, states: Sequence[ItemState], csrf: str, frozen: bool) -> str:
        head = ("<table><thead><tr><th>target</th><th>role</th><th>what it allows</th><th>sensitivity</th>"
                "<th>provenance</th><th>SoD</th><th>granted</th><th>decision</th></tr></thead><tbody>")
        rows = []
        for st in states:
            i = st.item
            cls = {"critical": "crit", "high": "high"}.get(i.sensitivity, "")
            sens = f"<span class=\"{cls}\">{e(i.sensitivity)}</span>"
            allowed = allows(self.privileges, i.access)
            what = e(i.description) + ("<br><code>" + "<br>".join(e(a) for a in allowed) + "</code>"
                                       if allowed else "")
            prov = (f"rule {e(', '.join(i.rules))}<br><span class=\"meta\">"
                    + e("; ".join(f"{k}={v}" for k, v in i.attributes)) + "</span>"
                    if i.provenance == "rule" else "hand grant (outside the rules)")
            sod = e(", ".join(i.sod)) if i.sod else ""
            shade = ' class="sod"' if i.sod else ""
            granted = i.granted_at[:10] if i.granted_at[:2].isdigit() else i.granted_at
            rows.append(f"<tr id=\"item-{e(i.item_id)}\"{shade}>"
                        f"<td>{e(i.target)}</td><td><b>{e(i.access)}</b><br><span class=\"meta\">login {e(i.role)}"
                        f"</span></td><td>{what}</td><td>{sens}</td><td>{prov}</td><td>{sod}</td>"
                        f"<td>{e(granted)}</td><td class=\"decide\">"
                        f"{self.decide_cell(campaign, user, st, csrf, frozen)}</td></tr>")
        return head + "".join(rows) + "</tbody></table>"

    def decide_cell(self, campaign: str, user: str, st: ItemState, csrf: str, frozen: bool) -> str:
        done = (f"<span class=\"decision {e(st.decision)}\">{e(st.decision)}</span>"
                + (f" <span class=\"meta\">({e(st.comment)})</span>" if st.comment else "")) if st.decision else ""
        if frozen:
            return done or "<span class=\"bad\">not decided</span>"
        if self_review(st.item, user):
            return (done + " <span class=\"bad self-review\">self-review refused: delegate this item</span>"
                    f"<form method=\"post\" action=\"/campaign/{quote(campaign)}/decide\">{csrf}"
                    f"<input type=\"hidden\" name=\"item\" value=\"{e(st.item.item_id)}\">"
                    "<input type=\"hidden\" name=\"comment\" value=\"\">"
                    "<button type=\"submit\" name=\"decision\" value=\"keep\" disabled>keep</button></form>")
        return (
            done + f"<form method=\"post\" action=\"/campaign/{quote(campaign)}/decide\">{csrf}"
            f"<input type=\"hidden\" name=\"item\" value=\"{e(st.item.item_id)}\">"
            "<input type=\"text\" name=\"comment\" placeholder=\"comment (required to revoke)\"> "
            "<button type=\"submit\" name=\"decision\" value=\"keep\">keep</button> "
            "<button type=\"submit\" name=\"decision\" value=\"revoke\">revoke</button></form>"
        )

    def owner_section(self, campaign: str, csrf: str, frozen: bool) -> str:
        from provisioner.core.governance.review import coverage

        cov = coverage(self.rs.states(campaign))
        rows = "".join(f"<tr><td>{e(r['reviewer'])}</td><td>{r['items']}</td><td>{r['decided']}</td>"
                       f"<td>{r['open']}</td></tr>" for r in cov)
        open_ = sum(r["open"] for r in cov)
        out = ("<h2>Campaign owner: coverage and sign-off</h2><table id=\"coverage\"><thead><tr><th>reviewer</th>"
               "<th>items</th><th>decided</th><th>open</th></tr></thead><tbody>" + rows + "</tbody></table>")
        unresolved = sorted(self.rs.unresolved(campaign) - set(self.rs.delegations(campaign)))
        if unresolved and not frozen:
            out += ("<p class=\"msg error\">No person in the directory behind reviewer(s) "
                    f"{e(', '.join(unresolved))}: reassign their items.</p>")
        if not frozen:
            out += (f"<form method=\"post\" action=\"/campaign/{quote(campaign)}/reassign\">{csrf}"
                    "<p>Reassign the items of reviewer <input type=\"text\" name=\"from\" id=\"reassign-from\"> "
                    "to <input type=\"text\" name=\"to\" id=\"reassign-to\"> because "
                    "<input type=\"text\" name=\"comment\" id=\"reassign-comment\"> "
                    "<button type=\"submit\" id=\"reassign\">Reassign</button></p></form>")
            out += (f"<form method=\"post\" action=\"/campaign/{quote(campaign)}/signoff\">{csrf}"
                    f"<p>{open_} item(s) still open. Signing off closes the campaign and freezes every decision.</p>"
                    "<input type=\"text\" name=\"comment\" id=\"signoff-comment\" placeholder=\"sign-off statement\"> "
                    "<button type=\"submit\" id=\"signoff\">Sign off</button></form>")
        return out

    # ------------------------------------------------------------------ actions

    def act(
        self, campaign: str, action: str, user: str, s: Session, form: Mapping[str, str], now: datetime
    ) -> Response:
        back = Response(HTTPStatus.SEE_OTHER, location=f"/campaign/{quote(campaign)}")
        if not self.rs.exists(campaign):
            return Response(HTTPStatus.NOT_FOUND, page("Not found", "<p>No such campaign.</p>"))
        ctx = RunContext(now, f"{user} (review web)", "review", store=self.store)
        try:
            if action == "decide":
                self.decide(campaign, user, [(form.get("item", ""), form.get("decision", ""),
                                               form.get("comment", ""))], ctx)
                s.flash.append(("info", "Decision recorded."))
            elif action == "bulk-keep":
                todo = [(st.item.item_id, "keep", "") for st in self.mine(campaign, user)
                        if not st.decision and low(st) and not self_review(st.item, user)]
                self.decide(campaign, user, todo, ctx)
                s.flash.append(("info", f"{len(todo)} low-sensitivity item(s) kept."))
            elif action == "delegate":
                lifecycle.delegate(self.rs, campaign, user, form.get("to", "").strip(), form.get("comment", ""),
                                   ctx, self.user_exists)
                s.flash.append(("info", f"Your items are delegated to {form.get('to', '').strip()}."))
            elif action == "reassign":
                if not self.is_owner(user):
                    raise CampaignError(f"{user} is not an owner of access reviews ([review] owners)")
                who = form.get("from", "").strip()
                lifecycle.delegate(self.rs, campaign, who, form.get("to", "").strip(), form.get("comment", ""),
                                   ctx, self.user_exists, by=user)
                s.flash.append(("info", f"Items of {who} reassigned to {form.get('to', '').strip()}."))
            elif action == "signoff":
                if not self.is_owner(user):
                    raise CampaignError(f"{user} is not an owner of access reviews ([review] owners)")
                lifecycle.sign_off(self.rs, campaign, user, form.get("comment", ""), ctx)
                s.flash.append(("info", f"Campaign {campaign} signed off; decisions are frozen."))
            else:
                return Response(HTTPStatus.NOT_FOUND, page("Not found", "<p>Not found.</p>"))
        except ProvisionerError as exc:
            log.warning("review_web_refused", campaign=campaign, user=user, action=action, why=str(exc))
            s.flash.append(("error", str(exc)))
            return Response(HTTPStatus.SEE_OTHER, location=f"/campaign/{quote(campaign)}")
        return back

    def decide(self, campaign: str, user: str, wanted: Sequence[tuple[str, str, str]], ctx: RunContext) -> None:
        if self.rs.frozen(campaign):
            raise CampaignError(f"campaign {campaign} is signed off; its decisions are frozen")
        states = {st.item.item_id: st.item for st in self.rs.states(campaign)}
        dele = self.rs.delegations(campaign)
        unresolved = self.rs.unresolved(campaign)
        decisions: list[Decision] = []
        for n, (iid, decision, comment) in enumerate(wanted, 1):
            item = states.get(iid)
            if item is None:
                raise CampaignError(f"unknown item {iid!r} in campaign {campaign}")
            decision, comment = decision.strip().lower(), comment.strip()
            if not decision:
                raise CampaignError(f"item {iid}: choose keep or revoke")
            problem = decision_problem(item, user, decision, comment, dele, unresolved)
            if problem:
                raise CampaignError(f"item {iid} ({item.identity}: {item.access}){problem}")
            decisions.append(Decision(iid, decision, comment, user, n))
        if decisions:
            lifecycle.store_decisions(self.rs, campaign, decisions, ctx, self.cfg.review.exclusion_days,
                                      "review web")


