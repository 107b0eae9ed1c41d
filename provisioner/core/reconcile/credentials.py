"""Credentials changed by hand on managed accounts -> notices.  Pure.

provisioner creates login accounts without a usable password (authentication
is the configured plugin, e.g. PAM or Kerberos, or an impossible hash).  A
password a DBA sets by hand on such an account is a way in that bypasses the
identity provider: it is reported on every plan until it is removed (the
adapter says which accounts differ, :attr:`ActualState.credential_drift`).
"""

from __future__ import annotations

from provisioner.core.ownership.ledger import is_foreign
from provisioner.core.ownership.policy import DiffPolicy, is_protected
from provisioner.core.values.model import ActualState, RoleKind
from provisioner.core.values.plan import Notice, NoticeLevel


def credential_notices(actual: ActualState, policy: DiffPolicy) -> list[Notice]:
    out = []
    for name in sorted(actual.credential_drift):
        role = actual.roles.get(name)
        if role is None or role.marker is None or role.marker.kind is not RoleKind.USER:
            continue
        if is_foreign(role.marker, policy.instance) or is_protected(role, actual, policy):
            continue
        out.append(
            Notice(
                NoticeLevel.WARNING,
                "credential_drift",
                f"{name}: its authentication on target {actual.target} was changed by hand (a password or "
                "plugin provisioner did not set); logins should come through the identity provider: "
                "remove it (ALTER USER ... IDENTIFIED VIA the configured plugin) or explain it",
                name,
            )
        )
    return out
