"""The scenario tests use the Samba AD DC of tests/ad (a DC of their own in a full run) and
the firm of tests/scenario/ad_firm.py."""

from tests.ad.conftest import samba_dc
from tests.scenario.ad_firm import firm

__all__ = ["firm", "samba_dc"]
