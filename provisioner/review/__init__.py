"""Access reviews in the shell: campaign storage, worksheets, import, apply, evidence.

The pure model is :mod:`provisioner.core.review`; see ``docs/reviews.md``.
"""
