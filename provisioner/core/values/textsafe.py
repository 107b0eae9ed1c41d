"""Text from the directory made safe to print: control, format (bidi overrides,
zero-width) and separator characters become visible escapes, so a value can never
forge a line or reorder what an approver reads.  Pure."""

from __future__ import annotations

import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def escape_text(text: str) -> str:
    """``text`` with every unsafe character as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``
    (a backslash itself is left alone: only what cannot be seen is escaped)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def escape_lines(lines: list[str]) -> str:
    """Each line escaped, then joined with newlines (the only newlines in the result)."""
    return "\n".join(escape_text(line) for line in lines)
