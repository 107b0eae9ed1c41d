"""Ownership markers: what parses as managed (exactly what json.loads accepts after the prefix)."""

from __future__ import annotations

import pytest

from provisioner.core.values import marker
from provisioner.core.values.model import Marker, RoleKind

P = marker.PREFIX


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        (P + '{"id":"7","kind":"user","source":"ldap"}', Marker(RoleKind.USER, "7", "ldap")),
        (P + ' \t{"kind": "group"}\n ', Marker(RoleKind.GROUP)),
        (P + '{"kind":"user","id":12}', Marker(RoleKind.USER, "12")),
        (P + '{"kind":"user"}\u00a0', None),  # not JSON whitespace
        (P + '{"kind":"user"} x', None),
        (P + '{"kind":"USER"}', None),
        (P + '{"kind":["user"]}', None),
        (P + '["user"]', None),
        (P + '"user"', None),
        (P + "{}", None),
        (P, None),
        ('provisioner:managed{"kind":"user"}', None),
        ("", None),
        (None, None),
    ],
)
def test_parse(comment: str | None, expected: Marker | None) -> None:
    assert marker.parse(comment) == expected


def test_round_trip() -> None:
    m = Marker(RoleKind.USER, "a\"b", "src")
    assert marker.parse(marker.encode(m)) == m
