"""Unicode data for role naming (shell: reads the data files of two maintained packages).

* transliteration of every script to ASCII: ``anyascii``;
* Unicode TR39 confusables: the ``confusables.txt`` pairs shipped (as JSON) by
  ``confusable-homoglyphs``.  That file lists, per character, the characters it can be
  confused with; the characters linked that way form classes, and each class's
  prototype is its smallest code point (the skeleton maps every member to it).  Only
  single-character confusables are used (``rn`` / ``m`` is not)."""

from __future__ import annotations

import json
from importlib import metadata, resources

from anyascii import anyascii

from provisioner.core.identity.naming import Scripts


def scripts() -> Scripts:
    """Transliteration and confusable prototypes, read from the installed packages."""
    data = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.get(c, c) != c:
            parent[c] = parent.get(parent[c], parent[c])
            c = parent[c]
        return c

    for char, alikes in data.items():
        if len(char) != 1:
            continue
        for alike in alikes:
            other = alike.get("c", "")
            if len(other) == 1 and other != char:
                a, b = root(char), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    prototypes = {c: root(c) for c in parent if root(c) != c}
    version = f"anyascii-{metadata.version('anyascii')}/confusables-{metadata.version('confusable-homoglyphs')}"
    return Scripts(version, anyascii, prototypes)
