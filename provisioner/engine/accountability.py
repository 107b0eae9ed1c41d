"""Why an apply is asked for: the reason's shape (``[audit] reason_pattern``), checked by both edges."""

from __future__ import annotations

import re

from provisioner.config import Config


def reason_problem(cfg: Config, reason: str) -> str | None:
    """Why ``reason`` is not acceptable for an apply (``[audit] reason_pattern``), or None."""
    if not reason.strip():
        return "a reason is required (the ticket or change request; recorded in the audit trail)"
    pattern = cfg.audit.reason_pattern
    if re.search(pattern, reason) is None:
        return f"{reason!r} does not match [audit] reason_pattern {pattern!r} in {cfg.path}"
    return None
