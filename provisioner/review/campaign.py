"""Campaign lifecycle: start (freeze a snapshot), import decisions, apply
revocations through the normal plan/safety/execute path, remind reviewers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from provisioner.alerts.dispatch import dispatch_alerts
from provisioner.config import Config
from provisioner.core.governance.alerts import Alert, Severity
from provisioner.core.governance.audit import EventKind
from provisioner.core.governance.review import (
    Decision,
    ItemState,
    Person,
    ReviewerMode,
    build_items,
    campaign_for,
    coverage,
    revocations,
    self_review,
    validate_rows,
)
from provisioner.core.identity.groupref import referenced_groups
from provisioner.core.values.model import ActualState, DesiredState, Identity, SourceSnapshot
from provisioner.core.values.plan import Plan, TargetPlan, execution_order, plan_scope
from provisioner.engine.connections import Targets, read_sources
from provisioner.engine.context import RunContext
from provisioner.engine.execute import execute
from provisioner.engine.segregation import conflicts
from provisioner.logs import log
from provisioner.mappings import Mappings, load_mappings
from provisioner.review import exclusions as review_exclusions
from provisioner.review.chained import decisions_json
from provisioner.review.store import CampaignError, ReviewStore
from provisioner.review.worksheets import WorksheetError, read_csv
from provisioner.store.audit import AuditFilter
from provisioner.store.state import StateStore

GRANT_KINDS = ("change_applied", "change_recovered")


def _people(snaps: Sequence[SourceSnapshot], desired: DesiredState) -> dict[str, Person]:
    idents: list[Identity] = [i for s in snaps for i in s.identities]
    lookup: dict[str, str] = {}
    for i in idents:
        for k in (i.dn, i.stable_id, i.username):
            if k:
                lookup.setdefault(k.casefold(), i.username)
    by_id = {i.stable_id: i for i in idents}
    out: dict[str, Person] = {}
    for name, user in desired.users.items():
        ident = by_id.get(user.stable_id)
        raw = ident.first("manager") if ident else None
        manager = lookup.get(raw.casefold()) if raw else None
        out[name] = Person(user.username, user.stable_id, manager)
    return out


def granted_at(store: StateStore) -> dict[tuple[str, str, str], str]:
    """(target, login role, group) -> when the audit trail last records the grant."""
    out: dict[tuple[str, str, str], str] = {}
    for row in store.audit.iter_rows(AuditFilter(kinds=GRANT_KINDS)):
        change = row.content.get("change") or {}
        if isinstance(change, dict) and change.get("kind") == "grant_membership":
            group = (change.get("params") or {}).get("group")
            key = (str(row.content.get("target")), str(row.content.get("role")), str(group))
            out[key] = str(row.content.get("at"))
    return out


@dataclass(frozen=True, slots=True)
class Inputs:
    mappings: Mappings
    snapshots: tuple[SourceSnapshot, ...]
    desired: DesiredState
    actual: Mapping[str, ActualState]


def read_inputs(cfg: Config, ctx: RunContext, targets: Targets) -> Inputs:
    from provisioner.engine.run import compute_desired

    mappings = load_mappings(cfg.mappings_dir)
    snaps = read_sources(cfg, ctx, referenced_groups(mappings.rules))
    desired = compute_desired(cfg, mappings, snaps, ctx.now, review_exclusions.for_run(cfg, ctx.store, ctx.now))
    return Inputs(mappings, snaps, desired, targets.inspect_all())


def start_campaign(
    cfg: Config, store: StateStore, campaign: str, ctx: RunContext, mode: ReviewerMode | None = None
) -> dict[str, Any]:
    """Freeze who has what on every target; returns a summary."""
    rs = ReviewStore(store)
    mode = mode or cfg.review.reviewer
    with Targets(cfg) as targets:
        inp = read_inputs(cfg, ctx, targets)
    flags: dict[tuple[str, str, str], list[str]] = {}
    for c in conflicts(inp.mappings, inp.desired, inp.actual, ctx, ZoneInfo(cfg.lifecycle.timezone), cfg.instance):
        for h in c.holdings:
            if h.path:
                flags.setdefault((c.target, c.user, h.path[0]), []).append(c.policy.id)
    key = rs.create(campaign, ctx.actor, mode, {})
    items = build_items(
        campaign, inp.actual, inp.desired, _people(inp.snapshots, inp.desired), inp.mappings.catalog,
        flags, granted_at(store), mode, key, cfg.instance,
    )
    seq, head = store.audit.head()
    meta = {
        "targets": sorted(inp.actual),
        "items": len(items),
        "fingerprints": {t: s.fingerprint() for t, s in sorted(inp.actual.items())},
        "audit_head": {"seq": seq, "hash": head},
        "snapshot_at": ctx.now.isoformat(),
    }
    known = {i.username.casefold() for snap in inp.snapshots for i in snap.identities}
    meta["unresolved_reviewers"] = sorted({i.reviewer for i in items if i.reviewer.casefold() not in known})
    rs.add_items(campaign, items, meta)
    rs.set_due(campaign, ctx.now + timedelta(days=cfg.review.due_days))
    meta["due_at"] = (ctx.now + timedelta(days=cfg.review.due_days)).isoformat()
    summary = {"campaign": campaign, "reviewer_mode": mode, **meta,
               "reviewers": {r["reviewer"]: r["items"] for r in coverage(rs.states(campaign))}}
    ctx.audit([ctx.event(EventKind.REVIEW, reason=f"access review {campaign} started", after=summary)])
    log.info("review_started", campaign=campaign, items=len(items))
    return summary


def import_worksheet(
    store: StateStore,
    path: Path,
    ctx: RunContext,
    reviewer: str | None = None,
    campaign: str | None = None,
    exclusion_days: int = 180,
) -> dict[str, Any]:
    """Validate every row, then store all decisions of the file, or none."""
    rows, digest = read_csv(path)
    if not rows:
        raise WorksheetError(f"{path}: no rows; nothing imported")
    rs = ReviewStore(store)
    campaign = campaign or rows[0][1].get("campaign", "")
    states = {s.item.item_id: s.item for s in rs.states(campaign)} if rs.exists(campaign) else None
    if states is None:
        raise WorksheetError(f"{path}: line {rows[0][0]}: unknown campaign {campaign!r}; nothing imported")
    if rs.frozen(campaign):
        raise WorksheetError(f"{path}: campaign {campaign} is signed off; its decisions are frozen; nothing imported")
    decisions, problems = validate_rows(rows, states, rs.key(campaign), campaign, reviewer, rs.delegations(campaign),
                                        rs.unresolved(campaign))
    if problems:
        raise WorksheetError(
            f"{path}: rejected, nothing imported ({len(problems)} problem(s)):\n" + "\n".join(problems)
        )
    who = reviewer or rows[0][1].get("reviewer", "")
    count = store_decisions(rs, campaign, decisions, ctx, exclusion_days, f"worksheet {path} ({digest})",
                            (str(path), digest))
    result = {"campaign": campaign, "file": str(path), "sha256": digest, "reviewer": who, "decisions": count,
              "revoke": sum(d.decision == "revoke" for d in decisions)}
    ctx.audit([ctx.event(EventKind.REVIEW, reason=f"access review {campaign}: decisions of {who} imported",
                         after={**result, "items": decisions_json(decisions)})])
    return result


def store_decisions(
    rs: ReviewStore,
    campaign: str,
    decisions: Sequence[Decision],
    ctx: RunContext,
    exclusion_days: int,
    via: str,
    file: tuple[str, str] | None = None,
) -> int:
    """Store validated decisions, record an exclusion for each revoke of rule-based access
    (the rules then honour it), and write one audit record per decision."""
    if rs.frozen(campaign):
        raise CampaignError(f"campaign {campaign} is signed off; its decisions are frozen")
    states = rs.states(campaign)
    name, digest = file if file is not None else (via, "")
    count = rs.record_decisions(campaign, decisions, name, digest, decisions[0].reviewer if decisions else "")
    made = {e.item_id: e for e in review_exclusions.record(rs, campaign, states, decisions, ctx.now, exclusion_days)}
    by_id = {s.item.item_id: s.item for s in states}
    ctx.audit([
        ctx.event(
            EventKind.REVIEW, target=by_id[d.item_id].target, role=by_id[d.item_id].role,
            reason=f"access review {campaign}: {d.reviewer} decided {d.decision} on {by_id[d.item_id].access}"
                   + (f": {d.comment}" if d.comment else ""),
            after={"campaign": campaign, "item_id": d.item_id, "access": by_id[d.item_id].access,
                   "identity": by_id[d.item_id].identity, "decision": d.decision, "comment": d.comment,
                   "reviewer": d.reviewer, "via": via,
                   **({"exclusion": made[d.item_id].to_json()} if d.item_id in made else {})},
        )
        for d in decisions
    ])
    return count


@dataclass(frozen=True, slots=True)
class ApplyResult:
    plan: Plan
    flagged: Mapping[str, str]
    gone: tuple[str, ...]
    seqs: Mapping[str, int] = field(default_factory=dict)


def apply_campaign(cfg: Config, store: StateStore, campaign: str, ctx: RunContext, dry_run: bool) -> ApplyResult:
    """Revoke what reviewers decided to revoke: plan, the same safety checks, then
    the normal execute path (each change in the audit trail).  ``dry_run`` only plans."""
    from provisioner.engine.run import safety

    rs = ReviewStore(store)
    rs.campaign(campaign)
    states = rs.states(campaign)
    with Targets(cfg) as targets:
        inp = read_inputs(cfg, ctx, targets)
        rev = revocations(states, inp.desired, inp.actual)
        plan = Plan(
            created_at=ctx.now,
            config_digest=cfg.digest,
            targets=tuple(
                TargetPlan(
                    t,
                    inp.actual[t].fingerprint(plan_scope(rev.changes[t]), frozenset(inp.desired.sources)),
                    execution_order(rev.changes[t]),
                )
                for t in sorted(rev.changes)
            ),
            sources=tuple(sorted(inp.desired.sources)),
            meta={"run_id": ctx.run_id, "actor": ctx.actor, "trigger": ctx.trigger, "campaign": campaign},
        )
        safety(cfg, plan, inp.actual, ctx)
        if dry_run:
            return ApplyResult(plan, rev.flagged, rev.gone)
        execute(plan, targets, ctx, cfg.safety.max_changes_per_transaction)
    seqs = _applied_seqs(store, ctx.run_id)
    by_item = {s.item.item_id: s.item for s in states}
    excluded = _exclusion_seqs(store, campaign)  # revokes an ordinary apply made for this campaign's exclusions
    done_before = {iid: excluded[k] for iid in rev.gone
                   if (k := (by_item[iid].target, by_item[iid].role, by_item[iid].access)) in excluded}
    outcomes: list[tuple[str, str, str, int | None]] = []
    revoked: dict[str, int] = {}
    for iid, item in by_item.items():
        seq = seqs.get((item.target, item.role, item.access))
        if seq is not None:
            revoked[iid] = seq
            outcomes.append((iid, "revoked", f"audit seq {seq}", seq))
    outcomes += [(iid, "needs rule change or exception", why, None) for iid, why in rev.flagged.items()]
    outcomes += [(iid, "revoked", f"audit seq {seq} (by an apply honouring the review exclusion)", seq)
                 for iid, seq in done_before.items()]
    revoked.update(done_before)
    gone = tuple(iid for iid in rev.gone if iid not in done_before)
    outcomes += [(iid, "already gone", "membership no longer present", None) for iid in gone]
    rs.record_outcomes(campaign, outcomes)
    if rev.flagged:
        ctx.audit([
            ctx.event(EventKind.REVIEW, target=by_item[iid].target, role=by_item[iid].role,
                      reason=f"access review {campaign}: revoke of {by_item[iid].access} not applied: {why}",
                      after={"item_id": iid, "access": by_item[iid].access})
            for iid, why in sorted(rev.flagged.items())
        ])
    return ApplyResult(plan, rev.flagged, gone, revoked)


def _exclusion_seqs(store: StateStore, campaign: str) -> dict[tuple[str, str, str], int]:
    """(target, login role, group) -> the latest committed revoke whose reason is this campaign's exclusion."""
    out: dict[tuple[str, str, str], int] = {}
    rule = f"review-exclusion:{campaign}"
    for row in store.audit.iter_rows(AuditFilter(kinds=GRANT_KINDS)):
        change = row.content.get("change") or {}
        if not isinstance(change, dict) or change.get("kind") != "revoke_membership":
            continue
        if any(isinstance(r, dict) and r.get("rule") == rule for r in change.get("reasons") or []):
            group = str((change.get("params") or {}).get("group"))
            out[(str(row.content.get("target")), str(row.content.get("role")), group)] = row.seq
    return out


def _applied_seqs(store: StateStore, run_id: str) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for row in store.audit.iter_rows(AuditFilter(run_id=run_id, kinds=GRANT_KINDS)):
        change = row.content.get("change") or {}
        if isinstance(change, dict) and change.get("kind") == "revoke_membership":
            group = str((change.get("params") or {}).get("group"))
            out[(str(row.content.get("target")), str(row.content.get("role")), group)] = row.seq
    return out


# --------------------------------------------------------------------------- delegation and sign-off


def delegate(
    rs: ReviewStore,
    campaign: str,
    reviewer: str,
    to: str,
    comment: str,
    ctx: RunContext,
    user_exists: Callable[[str], bool] | None = None,
    by: str | None = None,
) -> None:
    """``reviewer``'s items of ``campaign`` go to ``to`` (recorded and audited); ``by``: a campaign
    owner reassigning someone else's items (a job title's, an absent reviewer's), else the reviewer.
    Refused: after sign-off, to oneself, to nobody, to a name the directory does not know,
    or when it would make someone review their own access."""
    if rs.frozen(campaign):
        raise CampaignError(f"campaign {campaign} is signed off; its decisions are frozen")
    if not to or to.casefold() == reviewer.casefold():
        raise CampaignError("delegate to another reviewer (a directory username)")
    if user_exists is not None and not user_exists(to):
        raise CampaignError(f"delegation refused: no directory user {to!r}")
    dele = rs.delegations(campaign)
    mine = [s.item for s in rs.states(campaign)
            if (dele.get(s.item.reviewer, s.item.reviewer)).casefold() == reviewer.casefold()]
    if not mine:
        raise CampaignError(f"{reviewer} has no items of campaign {campaign} to delegate")
    own = sorted({i.access for i in mine if self_review(i, to)})
    if own and len(own) == len(mine):
        raise CampaignError(f"delegation refused: every item would be {to}'s own access (self-review)")
    originals = sorted({i.reviewer for i in mine})
    for original in originals:
        rs.delegate(campaign, original, to, by or reviewer, comment.strip(), ctx.now)
    ctx.audit([ctx.event(
        EventKind.REVIEW,
        reason=f"access review {campaign}: {by or reviewer} delegated {len(mine)} item(s) of {reviewer} to {to}"
               + (f": {comment.strip()}" if comment.strip() else ""),
        after={"campaign": campaign, "delegation": {"from": reviewer, "to": to, "by": by or reviewer,
                                                     "assigned_to": originals, "items": len(mine),
                                                     "comment": comment.strip()}},
    )])


def sign_off(rs: ReviewStore, campaign: str, owner: str, comment: str, ctx: RunContext) -> dict[str, Any]:
    """The campaign owner closes the campaign: refused while items are open; decisions frozen after."""
    states = rs.states(campaign)
    cov = coverage(states)
    open_ = sum(r["open"] for r in cov)
    if open_:
        raise CampaignError(f"campaign {campaign}: {open_} item(s) still open; every item needs a decision "
                            "before sign-off")
    if not comment.strip():
        raise CampaignError("sign-off needs a statement (comment)")
    rs.sign_off(campaign, owner, comment.strip(), ctx.now)
    summary = {"campaign": campaign, "signed_off_by": owner, "signed_off_at": ctx.now.isoformat(),
               "statement": comment.strip(), "items": len(states),
               "keep": sum(s.decision == "keep" for s in states),
               "revoke": sum(s.decision == "revoke" for s in states), "coverage": cov}
    ctx.audit([ctx.event(EventKind.REVIEW, reason=f"access review {campaign} signed off by {owner}",
                         after={"signoff": summary})])
    return summary


# --------------------------------------------------------------------------- daemon hooks


def open_scheduled_campaign(cfg: Config, store: StateStore, now: datetime | None = None) -> str | None:
    """Open this period's campaign (``2026-Q4`` by default) unless it exists; idempotent.
    Returns the id of the campaign opened, or None."""
    if cfg.review.schedule == "off":
        return None
    now = now or datetime.now(UTC)
    campaign = campaign_for(now, cfg.review.schedule)
    if ReviewStore(store).exists(campaign):
        return None
    ctx = RunContext(now, cfg.provisioner.service_identity, "schedule", store=store)
    start_campaign(cfg, store, campaign, ctx)
    return campaign


def reminders(store: StateStore, now: datetime | None = None, owners: Mapping[str, str] | None = None) -> list[Alert]:
    """Per open (not signed-off) campaign: one reminder per reviewer (or delegate) with open
    items; once the campaign is past its due date, one escalation per role owner listing the
    items of their roles still open (``owners``: role -> owner, from the role catalog)."""
    rs = ReviewStore(store)
    now = now or datetime.now(UTC)
    out = []
    for campaign in rs.list_campaigns():
        life = rs.lifecycle(campaign)
        if life["signed_off_at"] is not None:
            continue
        dele = rs.delegations(campaign)
        states = rs.states(campaign)
        due = life["due_at"]
        due_text = f" (due {due.date().isoformat()})" if due is not None else ""
        waiting: dict[str, list[ItemState]] = {}
        for st in states:
            if not st.decision:
                waiting.setdefault(dele.get(st.item.reviewer, st.item.reviewer), []).append(st)
        for reviewer, open_ in sorted(waiting.items()):
            mine = sum(1 for st in states if dele.get(st.item.reviewer, st.item.reviewer) == reviewer)
            out.append(Alert(
                Severity.INFO,
                f"review:{campaign}:{reviewer}",
                f"Access review {campaign}: {len(open_)} item(s) waiting for {reviewer}{due_text}",
                f"{reviewer} has decided {mine - len(open_)} of {mine} item(s) of access review {campaign}; "
                f"{len(open_)} still open. Decide them on the review page (provisioner review serve) or export "
                f"the worksheet with: provisioner review export --campaign {campaign} --out DIR",
                {"campaign": campaign, "reviewer": reviewer, "open": str(len(open_))},
            ))
        if due is None or now <= due:
            continue
        by_owner: dict[str, list[ItemState]] = {}
        for open_ in waiting.values():
            for st in open_:
                by_owner.setdefault((owners or {}).get(st.item.access) or "unowned", []).append(st)
        for owner, open_ in sorted(by_owner.items()):
            listed = "; ".join(f"{st.item.identity}: {st.item.access} (reviewer "
                               f"{dele.get(st.item.reviewer, st.item.reviewer)})" for st in open_[:20])
            out.append(Alert(
                Severity.WARNING,
                f"review-escalation:{campaign}:{owner}",
                f"Access review {campaign} is overdue: {len(open_)} item(s) of roles owned by {owner} undecided",
                f"Access review {campaign} was due {due.isoformat()}. Escalated to the role owner {owner}: "
                f"{listed}" + (" ..." if len(open_) > 20 else ""),
                {"campaign": campaign, "escalate_to": owner, "open": str(len(open_)), "due": due.isoformat()},
            ))
    return out


def remind_reviewers(cfg: Config, store: StateStore, now: datetime | None = None) -> list[Alert]:
    """Send the reminders and escalations through the alert channels (deduplicated); returns them."""
    catalog = load_mappings(cfg.mappings_dir).catalog
    alerts = reminders(store, now, {name: role.owner for name, role in catalog.roles.items()})
    dispatch_alerts(alerts, cfg.alerts, store, now=now)
    return alerts
