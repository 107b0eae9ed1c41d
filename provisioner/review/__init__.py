"""Access reviews in the shell: campaign storage, worksheets, import, apply, evidence.

The pure model is :mod:`provisioner.core.governance.review`; see ``docs/reviews.md``.
"""
