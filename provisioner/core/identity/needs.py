"""What a run needs from its sources: the canonical attributes the rules,
the naming template and the lifecycle read.  Sources ask the directory for
these only (fewer bytes to transfer and decode); ``explain`` and source checks
ask for everything by passing no needs at all."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.core.identity.reads import rule_reads, template_attributes
from provisioner.core.identity.rules import RuleSet

LIFECYCLE_ATTRIBUTES = frozenset({"status", "hire_date", "leave_date"})
"""Read by :func:`provisioner.core.identity.lifecycle.classify` for every identity."""
IDENTITY_ATTRIBUTES = frozenset({"username", "stable_id"})
CHECKED_ATTRIBUTES = frozenset({"employee_id"})
"""Read to report data errors: two people of one source sharing an employee id."""


@dataclass(frozen=True, slots=True)
class SourceNeeds:
    """``attributes``: canonical names to read (None = every mapped attribute)."""

    attributes: frozenset[str] | None = None

    def wants(self, canonical: str) -> bool:
        return self.attributes is None or canonical in self.attributes


ALL = SourceNeeds()


def referenced_attributes(rules: RuleSet, naming_template: str = "{username}") -> frozenset[str]:
    """Canonical attributes any rule (enabled or not) tests in a condition or
    expands in a ``{placeholder}`` of a grant, plus those of the naming template."""
    return rule_reads(rules).attributes | template_attributes(naming_template)


def source_needs(rules: RuleSet, naming_template: str = "{username}") -> SourceNeeds:
    """The attributes a plan depends on: rules, naming, lifecycle and identity."""
    wanted = (
        referenced_attributes(rules, naming_template) | LIFECYCLE_ATTRIBUTES | IDENTITY_ATTRIBUTES | CHECKED_ATTRIBUTES
    )
    return SourceNeeds(frozenset(wanted))
