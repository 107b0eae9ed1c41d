"""Read the mapping directory: rules, role catalog and rule test cases.

Layout::

    mappings/rules/*.toml   identity rules ([[rule]])
    mappings/roles/*.toml   role catalog ([role.NAME])
    mappings/tests/*.toml   rule test cases ([[case]])
    mappings/sod/*.toml         segregation-of-duties policies ([[policy]])
    mappings/exceptions/*.toml  SoD exceptions ([[exception]])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.core.governance.sod import Policy, SodException, build_exceptions, build_policies
from provisioner.core.governance.sodrefs import reference_problems
from provisioner.core.identity.rules import RuleSet, build_ruleset
from provisioner.core.identity.ruletests import RuleCase, parse_cases
from provisioner.core.privileges.catalog import Catalog, build_catalog
from provisioner.core.privileges.spec import EMPTY, EXTRA_KEYS, PrivilegeCatalog, build_privilege_catalog
from provisioner.errors import RuleError

CATALOG_EXTRA_KEYS: frozenset[str] = frozenset(EXTRA_KEYS)
"""Catalog keys that later features understand (the privilege model's)."""


@dataclass(frozen=True, slots=True)
class Mappings:
    root: Path
    rules: RuleSet
    catalog: Catalog
    cases: tuple[RuleCase, ...]
    privileges: PrivilegeCatalog = EMPTY
    """The catalog's privilege model (grants, inherits, extras)."""
    sod: tuple[Policy, ...] = ()
    """Segregation-of-duties policies (mappings/sod/*.toml)."""
    exceptions: tuple[SodException, ...] = ()
    """SoD exceptions (mappings/exceptions/*.toml)."""


def _read(folder: Path) -> list[tuple[str, str]]:
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.toml")):
        try:
            out.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError([f"{path}: cannot read: {exc}"]) from exc
    return out


def load_mappings(root: Path) -> Mappings:
    """Parse every mapping file; raise :class:`RuleError` listing every problem."""
    if not root.is_dir():
        raise RuleError([f"{root}: mapping directory does not exist"])
    rules, problems = build_ruleset(_read(root / "rules"))
    catalog, cat_problems = build_catalog(_read(root / "roles"), CATALOG_EXTRA_KEYS)
    cases, case_problems = parse_cases(_read(root / "tests"))
    privileges, priv_problems = build_privilege_catalog(catalog)
    problems += cat_problems + priv_problems + case_problems
    sod, sod_problems = build_policies(_read(root / "sod"))
    exceptions, exc_problems = build_exceptions(_read(root / "exceptions"), sod)
    problems += sod_problems + exc_problems + reference_problems(sod, catalog, rules)
    if not rules.rules and not problems:
        problems.append(f"{root / 'rules'}: no rules found (expected *.toml files with [[rule]] tables)")
    if problems:
        raise RuleError(problems)
    return Mappings(root, rules, catalog, tuple(cases), privileges, sod, exceptions)
