"""Which files a server may read: only inside ``settings.allowed_roots`` and ``ADAPTRANK_HOME``.

MCP callers pass paths (corpora to ingest or to generate training data from); without this check a
tool call could read any file the server process can. Symlinks are resolved before the check, so a
link inside a root cannot point outside it.
"""

from __future__ import annotations

from pathlib import Path

from adaptrank.core.errors import InputError
from adaptrank.core.settings import Settings


def allowed_roots(settings: Settings) -> list[Path]:
    return [Path(r).expanduser().resolve() for r in [*settings.allowed_roots, settings.home]]


def check_allowed_path(settings: Settings, path: str | Path, field: str = "path") -> Path:
    """The resolved ``path`` if it exists inside an allowed root; else an ``InputError`` naming
    the roots and the setting that extends them."""
    if not str(path).strip():
        raise InputError(field, "must be a non-empty path")
    resolved = Path(path).expanduser().resolve()
    roots = allowed_roots(settings)
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise InputError(
            field,
            f"{str(path)!r} is outside the allowed roots {[str(r) for r in roots]}; add its folder to "
            "ADAPTRANK_ALLOWED_ROOTS (a JSON list) to allow it",
        )
    if not resolved.exists():
        raise InputError(field, f"{str(path)!r} does not exist")
    return resolved
