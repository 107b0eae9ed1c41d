"""Secret references: ``env:NAME`` or ``file:PATH``; never a literal.

A :class:`SecretRef` only resolves when asked and never shows its value in
``repr``/``str``, so it can travel through logs and error messages safely.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provisioner.errors import SecretError


class SecretRef:
    __slots__ = ("_base", "ref")

    def __init__(self, ref: str, base: Path | None = None) -> None:
        if not isinstance(ref, str) or not (ref.startswith("env:") or ref.startswith("file:")):
            raise ValueError("a secret must be a reference 'env:NAME' or 'file:PATH', never a literal value")
        if len(ref.split(":", 1)[1]) == 0:
            raise ValueError(f"secret reference {ref!r} names nothing")
        self.ref = ref
        self._base = base

    def __repr__(self) -> str:
        return f"SecretRef({self.ref!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)

    def resolve(self) -> str:
        scheme, _, name = self.ref.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"secret {self.ref}: environment variable {name} is not set")
            return value
        path = Path(name)
        if not path.is_absolute() and self._base is not None:
            path = self._base / path
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise SecretError(f"secret {self.ref}: cannot read {path}: {exc.strerror}") from exc
        if mode & stat.S_IROTH:
            raise SecretError(
                f"secret {self.ref}: {path} is world-readable (mode {stat.filemode(mode)}); "
                "run chmod o-r on it"
            )
        return path.read_text(encoding="utf-8").rstrip("\r\n")
