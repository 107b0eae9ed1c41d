"""The one error tree of provisioner.

Every adapter translates its library's exceptions into one of these at its
boundary (``raise SourceUnavailable(...) from exc``).  Only the CLI turns them
into exit codes.  ``TemporaryError`` subclasses may be retried by the daemon after
``retry_after`` seconds; ``PermanentError`` subclasses need a human.
"""

from __future__ import annotations


class ProvisionerError(Exception):
    """Base of every error provisioner raises on purpose."""

    exit_code = 1
    run_id: str | None = None
    """Set when the failure was recorded as a run (run history, audit trail, the run's alerts)."""


class PermanentError(ProvisionerError):
    """Retrying will not help: configuration, rules or data must change."""


class TemporaryError(ProvisionerError):
    """A retry may succeed (network, server restart, lock held elsewhere)."""

    def __init__(self, message: str, *, retry_after: float = 30.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RunInterrupted(TemporaryError):
    """A stop was requested between two targets' transactions; the rest waits for the next run."""


class ConfigError(PermanentError):
    """The configuration file is missing, malformed or invalid."""


class SecretError(ConfigError):
    """A secret reference cannot be resolved or is unsafe (world-readable file)."""


class RuleError(PermanentError):
    """One or more mapping files are malformed; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SourceError(ProvisionerError):
    """Base for identity-source problems."""


class SourceUnavailable(SourceError, TemporaryError):
    """The directory could not be reached or refused the bind."""


class SourceIncomplete(SourceError, PermanentError):
    """The directory answered but not completely (size limit, partial page,
    unreadable group member range). Nothing is planned from partial data."""


class SourceUnhealthy(SourceError, PermanentError):
    """The health gate refused the snapshot (empty, or a suspicious drop)."""


class IdentityError(PermanentError):
    """Identities cannot be mapped safely (e.g. role-name collisions)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class TargetError(ProvisionerError):
    """Base for database-target problems."""


class TargetUnavailable(TargetError, TemporaryError):
    """The target database could not be reached."""


class ApplyFailed(TargetError, TemporaryError):
    """A change failed during apply; the transaction was rolled back."""


class VerificationFailed(TargetError, PermanentError):
    """After apply, the catalog does not show what was applied."""


class PlanError(PermanentError):
    """A saved plan cannot be used (unreadable, other config, other target)."""


class StalePlan(PlanError):
    """The target changed since the saved plan was computed."""


class SafetyViolation(PermanentError):
    """Safety checks refused the plan; ``violations`` lists every one."""

    exit_code = 3

    def __init__(self, violations: list[str]) -> None:
        self.violations = list(violations)
        super().__init__("\n".join(self.violations))


class BreakerTripped(SafetyViolation):
    """The mass-revocation breaker refused the plan (and no other safety check did).
    Override once with ``apply --allow-mass-revocation --reason TEXT``."""

    exit_code = 4
