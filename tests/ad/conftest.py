"""Fixtures around a throw-away Samba AD DC (tests/support/samba.py).

``samba_dc``  session-wide DC (provisioning takes seconds), stopped by PID at the end.
A missing samba binary fails the tests (never skips): run scripts/install-deps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.samba import SambaDC, SambaMissing


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    try:
        dc = SambaDC(max_runtime=3600)
    except SambaMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        dc.provision()
        dc.start()
        yield dc
    finally:
        dc.cleanup()
