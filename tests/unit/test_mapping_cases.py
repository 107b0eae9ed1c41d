"""The rule test cases shipped in mappings/tests run as part of the suite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.core.identity.ruletests import run_cases
from provisioner.mappings import load_mappings

ROOT = Path(__file__).resolve().parents[2] / "mappings"
MAPPINGS = load_mappings(ROOT)


def test_shipped_mappings_have_cases_and_catalog() -> None:
    assert len(MAPPINGS.cases) >= 10
    granted = {g for r in MAPPINGS.rules.rules for g in r.grants if "{" not in g}
    missing = granted - set(MAPPINGS.catalog.roles)
    assert missing == set(), f"roles granted by rules but absent from the catalog: {missing}"


@pytest.mark.parametrize("case", MAPPINGS.cases, ids=lambda c: c.name)
def test_rule_case(case) -> None:  # type: ignore[no-untyped-def]
    (result,) = run_cases(MAPPINGS.rules, [case], datetime.now(UTC).date())
    assert result.passed, result.explain()
