"""The one ``{placeholder}`` grammar of templates: rule grants (``dept_{department}``,
``grp_{group}``, ``{username}_ro``) and the naming template (``{username}``).

A placeholder is a lower-case canonical name in braces: ``{[a-z_][a-z0-9_]*}``.  Every
module that reads, expands or matches a template uses this one definition.  Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
GROUP = "group"
"""``{group}`` expands to the identity's groups (core/identity/grouptemplate.py), not an attribute."""
USERNAME = "username"


def placeholders(template: str) -> list[str]:
    """The names of ``template``'s placeholders, in order (repeats kept)."""
    return PLACEHOLDER.findall(template)


def is_template(text: str) -> bool:
    """True when ``text`` has a placeholder (a literal role name has none)."""
    return PLACEHOLDER.search(text) is not None


def substitute(template: str, value: Callable[[str], str]) -> str:
    """``template`` with each placeholder replaced by ``value(name)``."""
    return PLACEHOLDER.sub(lambda m: value(m.group(1)), template)


def matcher(template: str) -> re.Pattern[str]:
    """A case-insensitive pattern matching every name ``template`` can expand to (each
    placeholder: one or more characters)."""
    literals = PLACEHOLDER.split(template)[::2]  # split keeps the captured names at odd indexes
    return re.compile(".+".join(re.escape(p) for p in literals), re.IGNORECASE)
