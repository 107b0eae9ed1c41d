"""The scenario tests use the Samba AD DC of tests/ad (a DC of their own in a full run)."""

from tests.ad.conftest import samba_dc

__all__ = ["samba_dc"]
