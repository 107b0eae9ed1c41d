"""Secret references: ``env:NAME``, ``file:PATH`` or ``credential:NAME``; never a literal.

``credential:NAME`` is the file ``NAME`` in ``$CREDENTIALS_DIRECTORY``: systemd's
``LoadCredential=NAME:PATH`` (deploy/provisioner.service) or, in a container, a
secrets mount with ``CREDENTIALS_DIRECTORY`` pointing at it.

A :class:`SecretRef` only resolves when asked and never shows its value in
``repr``/``str``, so it can travel through logs and error messages safely.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provisioner.errors import SecretError


def _plain_name(name: str) -> bool:
    return "/" not in name and name not in (".", "..")


class SecretRef:
    __slots__ = ("_base", "ref")

    def __init__(self, ref: str, base: Path | None = None) -> None:
        if not isinstance(ref, str) or not ref.startswith(("env:", "file:", "credential:")):
            raise ValueError(
                "a secret must be a reference 'env:NAME', 'file:PATH' or 'credential:NAME', never a literal value"
            )
        if len(ref.split(":", 1)[1]) == 0:
            raise ValueError(f"secret reference {ref!r} names nothing")
        if ref.startswith("credential:") and not _plain_name(ref.split(":", 1)[1]):
            raise ValueError(f"secret reference {ref!r}: a credential name is a plain file name (no '/', not '..')")
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
        if scheme == "credential":
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretError(
                    f"secret {self.ref}: CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=; "
                    "in a container, point it at the secrets mount)"
                )
            path = Path(directory) / name
        else:
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
