"""Versioned folders on disk: the one scheme behind the model store and the dataset store.

``<root>/<name>/<version>/`` holds one version (with a ``card.json``), and a pointer file
(``ACTIVE`` for models, ``LATEST`` for datasets) names the version in use. Every write is atomic: a
version is written into a hidden temp directory and renamed into place, and pointers and cards are
replaced with ``os.replace`` (:func:`write_atomic`), so a crash or a cancelled job never leaves a
half-written version and never touches the one in use. A process killed while writing leaves its
temp directory; the temp name records the writer (pid and host), and the next write in that folder
removes the ones whose writer is gone (:func:`sweep_stale_temp`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adaptrank.core.errors import InputError, NotFoundError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CARD = "card.json"


def validate_name(name: str, field: str = "name") -> str:
    """Names are single path components: no separators, no '..', no hidden files."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in {".", ".."}:
        raise InputError(
            field,
            f"{name!r} is not a valid name (1-64 characters of letters, digits, '.', '_', '-', "
            "starting with a letter or digit)",
        )
    return name


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temp file, fsync, ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_json(path: Path, data: Any) -> None:
    """Atomic JSON write used by cards, dataset and job files."""
    write_atomic(path, json.dumps(data, indent=2, default=str))


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(version: str) -> str:
    """``.tmp-<version>-<pid>-<host>-``: who is writing, so a leftover can be told from work in progress."""
    return f".tmp-{version}-{os.getpid()}-{_host_tag()}-"


def sweep_stale_temp(folder: Path) -> list[str]:
    """Remove temp directories left in ``folder`` by writers on this host that no longer run
    (killed mid-write); returns their names. Others' and live writers' are left alone."""
    removed = []
    host = _host_tag()
    for entry in folder.glob(".tmp-*"):
        parts = entry.name.rsplit("-", 3)
        if len(parts) != 4 or not parts[1].isdigit() or parts[2] != host or not entry.is_dir():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # the writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


class VersionedStore:
    """Names, versions and the pointer of one kind of versioned folder; subclasses add the card.

    ``kind`` is the field name errors report for a bad name (``"model"``, ``"dataset"``);
    ``pointer`` is the file that names the version in use.
    """

    kind = "name"
    pointer = "ACTIVE"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def versions(self, name: str) -> list[str]:
        d = self.root / validate_name(name, self.kind)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and NAME_RE.match(p.name) and (p / CARD).is_file())

    def pointed_version(self, name: str) -> str | None:
        """The version the pointer names, if it still exists."""
        try:
            version = (self.root / validate_name(name, self.kind) / self.pointer).read_text().strip()
        except FileNotFoundError:
            return None
        return version if (self.root / name / version / CARD).is_file() else None

    def locate(self, name: str, version: str | None, no_pointer: str) -> tuple[str, Path, str | None]:
        """``(version, its folder, the pointed version)`` for ``version``, or for the pointed one
        when None; a ``NotFoundError`` naming what exists otherwise (``no_pointer``: what to say
        when nothing is pointed at, e.g. "has no active version")."""
        validate_name(name, self.kind)
        pointed = self.pointed_version(name)
        version = version or pointed
        if version is None:
            raise NotFoundError(self.kind, f"{name!r} {no_pointer} (known: {self.names()})")
        validate_name(version, "version")
        path = self.root / name / version
        if not (path / CARD).is_file():
            raise NotFoundError(self.kind, f"{name!r} has no version {version!r} (known: {self.versions(name)})")
        return version, path, pointed

    def set_pointer(self, name: str, version: str) -> None:
        write_atomic(self.root / name / self.pointer, version + "\n")

    def new_version_id(self, name: str) -> str:
        """Time-ordered ids (``v20261125-074512-3``) so versions sort by creation."""
        validate_name(name, self.kind)
        stamp = time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
        existing = set(self.versions(name))
        n = 1
        while f"{stamp}-{n}" in existing or (self.root / name / f"{stamp}-{n}").exists():
            n += 1
        return f"{stamp}-{n}"

    @contextmanager
    def writing_version(self, name: str, version: str, exists_message: str) -> Iterator[Path]:
        """Yield a temp directory; when the block succeeds it is renamed to ``<name>/<version>``.

        On an exception (a failed or cancelled run, a full disk) the temp directory is removed and
        the store is exactly as it was. ``exists_message``: the error when the version exists.
        """
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / version
        if final.exists():
            raise InputError("version", exists_message)
        sweep_stale_temp(folder)  # what a killed writer left
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(version), dir=folder))
        try:
            yield tmp
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
