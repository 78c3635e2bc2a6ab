"""Which files a server may read: only inside ``settings.allowed_roots`` and ``ADAPTRANK_HOME``.

MCP callers pass paths (corpora to ingest or to generate training data from); without this check a
tool call could read any file the server process can. Symlinks are resolved before the check, so a
link inside a root cannot point outside it — and the check runs on *every file a reader opens*
(:func:`inside_roots`), not only on the folder the caller named: a folder inside a root may hold a
file symlink (``passwd.txt -> /etc/passwd``) whose target is outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adaptrank.core.errors import InputError
from adaptrank.core.settings import Settings

Roots = Sequence[Path] | None
"""Resolved allowed roots; ``None`` means unrestricted (the CLI's own user reading their own files)."""


def allowed_roots(settings: Settings) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in [*settings.allowed_roots, settings.home]]


def inside_roots(path: str | Path, roots: Roots, field: str = "path") -> Path:
    """``path`` resolved (symlinks followed); an ``InputError`` if ``roots`` is given and the
    resolved target lies outside every root. Call it on each file right before opening it."""
    if "\0" in str(path):
        raise InputError(field, "must not contain a NUL byte")
    resolved = Path(path).expanduser().resolve()
    if roots is not None and not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise InputError(
            field,
            f"{str(path)!r} resolves to a file outside the allowed roots {[str(r) for r in roots]}; add its "
            "folder to ADAPTRANK_ALLOWED_ROOTS (a JSON list) to allow it",
        )
    return resolved


def check_allowed_path(settings: Settings, path: str | Path, field: str = "path") -> Path:
    """The resolved ``path`` if it exists inside an allowed root; else an ``InputError`` naming
    the roots and the setting that extends them."""
    if not str(path).strip():
        raise InputError(field, "must be a non-empty path")
    resolved = inside_roots(path, allowed_roots(settings), field)
    if not resolved.exists():
        raise InputError(field, f"{str(path)!r} does not exist")
    return resolved
