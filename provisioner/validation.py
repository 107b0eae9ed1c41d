"""``provisioner validate``: the configuration and every mapping file in one pass.

Every problem is reported at once: configuration errors do not stop the mapping
files from being checked (the mapping directory is then taken from the raw TOML),
and the cross-checks between the two run whenever both could be read:

* errors: a rule (or the naming template) reads an attribute no source maps -- a
  misspelled ``departmnet`` would silently never match;
* warnings: a role named in ``protected_roles``, ``break_glass``, ``drift_overrides``
  or ``reassign_owned_to`` that exists nowhere (not in the role catalog, granted by
  no rule and -- with ``online`` -- on no target), and a canonical name in
  ``[sources.attributes]`` that neither provisioner nor any rule reads.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from provisioner.config import Config, EntraSourceConfig, load_config
from provisioner.core.identity.needs import IDENTITY_ATTRIBUTES, LIFECYCLE_ATTRIBUTES, referenced_attributes
from provisioner.core.identity.placeholders import is_template
from provisioner.core.identity.rules import RuleSet
from provisioner.errors import ConfigError, RuleError, SecretError
from provisioner.mappings import Mappings, load_mappings
from provisioner.secrets import SecretRef
from provisioner.sources.attributes import CANONICAL, attribute_map
from provisioner.sources.entra_records import CANONICAL as ENTRA_CANONICAL


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: Config | None = None
    mappings: Mappings | None = None


def _mappings_dir(path: Path) -> Path:
    """The mapping directory named by a configuration that did not validate."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.parent / "mappings"
    general = data.get("provisioner")
    name = general.get("mappings") if isinstance(general, dict) else None
    folder = Path(name) if isinstance(name, str) and name else Path("mappings")
    return folder if folder.is_absolute() else path.parent / folder


def validate(path: Path, roles_on_targets: Callable[[Config], Iterable[str]] | None = None) -> Report:
    """Check ``path`` and its mappings; ``roles_on_targets``: every role name on the
    targets (``validate --online``), for the role-name warnings."""
    report = Report()
    try:
        report.config = load_config(path)
    except ConfigError as exc:
        report.errors.extend(line for line in str(exc).splitlines() if not line.startswith("invalid configuration"))
    root = report.config.mappings_dir if report.config is not None else _mappings_dir(path)
    try:
        report.mappings = load_mappings(root)
    except RuleError as exc:
        report.errors.extend(exc.problems)
    if report.config is not None and report.mappings is not None:
        _cross_check(report.config, report.mappings, report, roles_on_targets)
    if report.config is not None:
        _secrets(report.config, report)
    return report


def _secrets(cfg: Config, report: Report) -> None:
    """A warning per secret reference a run would refuse (unset, unreadable, world-readable):
    warnings, as validate often runs where the production secrets are not (CI)."""
    for key, ref in _refs(cfg, ""):
        try:
            ref.resolve()
        except SecretError as exc:
            report.warnings.append(f"{cfg.path}: {key}: {exc}")


def _refs(value: object, key: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield key, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _refs(getattr(value, name), f"{key}.{name}" if key else name)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _refs(item, f"{key}[{i}]")


def mapping_errors(cfg: Config, mappings: Mappings) -> list[str]:
    """The errors ``validate`` finds between a loaded configuration and its mappings (offline):
    what a run must not start with -- the daemon checks them at start and on every reload."""
    report = Report(config=cfg, mappings=mappings)
    _cross_check(cfg, mappings, report, None)
    return report.errors


def provided_attributes(cfg: Config) -> dict[str, frozenset[str]]:
    """Per source, the canonical attributes it maps."""
    out: dict[str, frozenset[str]] = {}
    for source in cfg.sources:
        names = set(IDENTITY_ATTRIBUTES) | {k.lower() for k in source.attributes}
        if isinstance(source, EntraSourceConfig):
            names |= set(ENTRA_CANONICAL.values()) | {"hire_date", "leave_date", "manager", "manager_id"}
            names |= {c.lower() for c in source.extension_attributes.values()}
        else:
            names |= set(attribute_map(source).fields)
        out[source.name] = frozenset(names)
    return out


def _cross_check(
    cfg: Config, mappings: Mappings, report: Report, roles_on_targets: Callable[[Config], Iterable[str]] | None
) -> None:
    provided = provided_attributes(cfg)
    everywhere = frozenset().union(*provided.values())
    known = ", ".join(sorted(everywhere))
    for rule in mappings.rules.rules:
        for attr in sorted(referenced_attributes(_only(mappings, rule.id))):
            if attr not in everywhere:
                report.errors.append(
                    f"{rule.where}: rule {rule.id!r} reads attribute {attr!r}, which no source maps"
                    f"{_suggest(attr, everywhere)} (mapped: {known})"
                )
    for attr in sorted(referenced_attributes(_only(mappings, None), cfg.naming.template) - everywhere):
        report.errors.append(
            f"{cfg.path}: naming.template reads attribute {attr!r}, which no source maps{_suggest(attr, everywhere)}"
        )
    used = referenced_attributes(mappings.rules, cfg.naming.template) | LIFECYCLE_ATTRIBUTES
    standard = set(CANONICAL) | {"upn", "manager_id"}
    for i, source in enumerate(cfg.sources):
        for name in sorted(source.attributes):
            if name.lower() not in standard and name.lower() not in used:
                report.warnings.append(
                    f"{cfg.path}: sources[{i}].attributes.{name}: {name!r} is no canonical attribute and no rule "
                    f"reads it{_suggest(name.lower(), standard)}"
                )
    _role_names(cfg, mappings, report, roles_on_targets)


def _only(mappings: Mappings, rule_id: str | None) -> RuleSet:
    """A rule set holding just ``rule_id`` (None: no rule) for ``referenced_attributes``."""
    return RuleSet(tuple(r for r in mappings.rules.rules if r.id == rule_id))


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _role_names(
    cfg: Config, mappings: Mappings, report: Report, roles_on_targets: Callable[[Config], Iterable[str]] | None
) -> None:
    known = set(mappings.catalog.roles) | {g for r in mappings.rules.rules for g in r.grants if not is_template(g)}
    on_targets = set(roles_on_targets(cfg)) if roles_on_targets is not None else None
    named: list[tuple[str, str]] = [("lifecycle.break_glass", n) for n in cfg.lifecycle.break_glass]
    if cfg.lifecycle.reassign_owned_to:
        named.append(("lifecycle.reassign_owned_to", cfg.lifecycle.reassign_owned_to))
    for i, t in enumerate(cfg.targets):
        named += [(f"targets[{i}].protected_roles", n) for n in t.protected_roles]
        named += [(f"targets[{i}].break_glass", n) for n in t.break_glass]
        named += [(f"targets[{i}].drift_overrides", n) for n in _keys(t.drift_overrides)]
    for key, name in named:
        if name in known or (on_targets is not None and name in on_targets):
            continue
        where = "in the role catalog, in any rule or on any target" if on_targets is not None else (
            "in the role catalog or in any rule (validate --online also looks on the targets)"
        )
        hint = _suggest(name, known | (on_targets or set()))
        if on_targets is None and not hint:
            continue  # offline, only a near miss of a known name is worth a warning
        report.warnings.append(f"{cfg.path}: {key}: role {name!r} exists nowhere {where}{hint}")


def _keys(mapping: Mapping[str, object]) -> list[str]:
    return sorted(mapping)
