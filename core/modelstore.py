"""The model store: ``models/<name>/<version>/`` with the weights and a ``card.json``.

One version per name is *active* (``models/<name>/ACTIVE`` holds its version). Every write is
atomic: a new version is written into a hidden temp directory and renamed into place, and the
``ACTIVE`` pointer is replaced with ``os.replace``, so a crash or a cancelled job never leaves a
half-written model behind and never touches the active one. A process killed while writing leaves
its temp directory; the temp name records the writer (pid and host), and the next write in that
folder removes the ones whose writer is gone (:func:`sweep_stale_temp`).
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

from pydantic import BaseModel, Field

from adaptrank.core.errors import InputError, NotFoundError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CARD = "card.json"
ACTIVE = "ACTIVE"


class ModelCard(BaseModel):
    """What a model is and how it came to be; written next to the weights."""

    name: str
    version: str
    backend: str = Field(description="cross-encoder | bi-encoder | residual")
    base_model: str | None = None
    dataset: str | None = None
    loss: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics_before: dict[str, float] = Field(default_factory=dict)
    metrics_after: dict[str, float] = Field(default_factory=dict)
    created: float = Field(default_factory=time.time)
    extra: dict[str, Any] = Field(default_factory=dict)


class ModelRef(BaseModel):
    name: str
    version: str
    path: Path
    card: ModelCard
    active: bool = False


def validate_name(name: str, field: str = "name") -> str:
    """Names are single path components: no separators, no '..', no hidden files."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in {".", ".."}:
        raise InputError(
            field,
            f"{name!r} is not a valid name (1-64 characters of letters, digits, '.', '_', '-', "
            "starting with a letter or digit)",
        )
    return name


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def versions(self, name: str) -> list[str]:
        d = self.root / validate_name(name, "model")
        if not d.is_dir():
            return []
        return sorted(
            p.name for p in d.iterdir() if p.is_dir() and NAME_RE.match(p.name) and (p / CARD).is_file()
        )

    def active_version(self, name: str) -> str | None:
        pointer = self.root / validate_name(name, "model") / ACTIVE
        try:
            version = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return version if (self.root / name / version / CARD).is_file() else None

    def get(self, name: str, version: str | None = None) -> ModelRef:
        """The named version, or the active one. Raises NotFoundError naming what exists."""
        validate_name(name, "model")
        active = self.active_version(name)
        version = version or active
        if version is None:
            raise NotFoundError(f"model: {name!r} has no active version (known: {self.names()})")
        validate_name(version, "version")
        path = self.root / name / version
        if not (path / CARD).is_file():
            raise NotFoundError(f"model: {name!r} has no version {version!r} (known: {self.versions(name)})")
        card = ModelCard.model_validate_json((path / CARD).read_text())
        return ModelRef(name=name, version=version, path=path, card=card, active=version == active)

    def list(self) -> list[ModelRef]:
        return [self.get(n, v) for n in self.names() for v in self.versions(n)]

    # -- writing -------------------------------------------------------------------------------
    def new_version_id(self, name: str) -> str:
        """Time-ordered ids (``v20261125-074512-3``) so versions sort by creation."""
        validate_name(name, "model")
        stamp = time.strftime("v%Y%m%d-%H%M%S", time.gmtime())
        existing = set(self.versions(name))
        n = 1
        while f"{stamp}-{n}" in existing or (self.root / name / f"{stamp}-{n}").exists():
            n += 1
        return f"{stamp}-{n}"

    @contextmanager
    def writing(self, name: str, card: dict[str, Any] | ModelCard, version: str | None = None) -> Iterator[Path]:
        """Yield a temp directory to write weights into; on success it becomes a version.

        On an exception (a failed or cancelled run, a full disk) the temp directory is removed and
        the store is exactly as it was.
        """
        validate_name(name, "model")
        version = validate_name(version, "version") if version else self.new_version_id(name)
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        final = model_dir / version
        if final.exists():
            raise InputError("version", f"{name}/{version} already exists")
        sweep_stale_temp(model_dir)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(version), dir=model_dir))
        try:
            yield tmp
            data = card.model_dump() if isinstance(card, ModelCard) else dict(card)
            data.update(name=name, version=version)
            card_obj = ModelCard.model_validate(data)
            _write_atomic(tmp / CARD, card_obj.model_dump_json(indent=2))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def activate(self, name: str, version: str) -> None:
        self.get(name, version)  # must exist
        _write_atomic(self.root / name / ACTIVE, version + "\n")

    def update_card(self, name: str, version: str, **fields: Any) -> ModelCard:
        ref = self.get(name, version)
        card = ref.card.model_copy(update=fields)
        _write_atomic(ref.path / CARD, card.model_dump_json(indent=2))
        return card

    def delete(self, name: str, version: str) -> None:
        ref = self.get(name, version)
        if ref.active:
            raise InputError("version", f"{name}/{version} is active; activate another first")
        shutil.rmtree(ref.path)

    def cache_dir(self, ref: ModelRef, kind: str) -> Path:
        """A per-version cache folder (ONNX exports and the like), rebuilt if deleted."""
        return ref.path / ".cache" / validate_name(kind, "kind")


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


def _write_atomic(path: Path, text: str) -> None:
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
    """Atomic JSON write used by dataset and job files too."""
    _write_atomic(path, json.dumps(data, indent=2, default=str))
