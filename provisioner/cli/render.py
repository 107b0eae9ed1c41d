"""Human-readable rendering of plans and explanations."""

from __future__ import annotations

from provisioner.core.governance.sodeval import withheld_count
from provisioner.core.identity.explain import Explanation
from provisioner.core.values.plan import ChangeKind, NoticeLevel, Plan
from provisioner.core.values.textsafe import escape_lines

_SIGN = {
    ChangeKind.CREATE_ROLE: "+",
    ChangeKind.GRANT_MEMBERSHIP: "+",
    ChangeKind.GRANT_PRIVILEGE: "+",
    ChangeKind.REVOKE_MEMBERSHIP: "-",
    ChangeKind.REVOKE_PRIVILEGE: "-",
    ChangeKind.DROP_ROLE: "-",
    ChangeKind.TERMINATE_SESSIONS: "!",
}


def render_plan(plan: Plan, verbose: bool = True) -> str:
    lines = [
        f"Plan {plan.meta.get('run_id', '')} at {plan.created_at.isoformat()}: "
        f"{plan.identities_seen} identities from {', '.join(plan.sources) or '-'}"
    ]
    for tp in plan.targets:
        lines.append("")
        lines.append(f"Target {tp.target} ({len(tp.changes)} change(s)):")
        if not tp.changes:
            lines.append("  No changes. The target matches the rules.")
        for change in tp.changes:
            lines.append(f"  {_SIGN.get(change.kind, '~')} {change.describe(tp.dialect)}")
            if verbose:
                lines.extend(f"      because {r.describe()}" for r in change.reasons)
        for notice in tp.notices:
            if verbose or notice.level is not NoticeLevel.INFO:
                lines.append(f"  [{notice.level.value}] {notice.code}: {notice.message}")
    counts = plan.counts()
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no changes"
    errors = sum(n.level is NoticeLevel.ERROR for tp in plan.targets for n in tp.notices)
    lines += ["", f"Summary: {summary}." + (f" {errors} error notice(s): read them above." if errors else "")]
    held_back = withheld_count(plan)
    if held_back:
        lines.append(
            f"Withheld: {held_back} request(s) by segregation of duties (sod_violation above); "
            "they stay withheld until the rule changes, an exception is recorded or the other access goes."
        )
    return escape_lines(lines)


def render_explanation(exp: Explanation) -> str:
    ident = exp.identity
    lines = [
        f"{ident.username} (id {ident.stable_id}, source {ident.source})",
        f"  dn: {ident.dn or '-'}",
        f"  lifecycle: {exp.lifecycle.value} ({exp.lifecycle_reason.text})",
        "  attributes: " + ", ".join(f"{k}={'|'.join(v)}" for k, v in sorted(ident.attributes.items()) if v),
        f"  groups: {', '.join(sorted(g for g in ident.groups if '=' not in g)) or '-'}",
        "",
        "Rules:",
    ]
    for v in exp.verdicts:
        mark = "MATCH" if v.matched else "no   "
        detail = ", ".join(f"{k}={val!r}" for k, val in v.evidence) if v.matched else ""
        lines.append(f"  {mark} {v.rule_id} -> {', '.join(v.roles)}  ({v.where})")
        if detail:
            lines.append(f"        because {detail}")
        if v.failed:
            lines.append(f"        failed: {v.failed}")
    roles = exp.roles
    lines += [
        "",
        "Roles from rules: "
        + (", ".join(f"{r} [{', '.join(ids)}]" for r, ids in sorted(roles.items())) or "none"),
    ]
    return escape_lines(lines)
