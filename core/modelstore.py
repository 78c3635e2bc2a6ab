"""The model store: ``models/<name>/<version>/`` with the weights and a ``card.json``.

One version per name is *active* (``models/<name>/ACTIVE`` holds its version). Writes are atomic,
by the scheme of :mod:`adaptrank.core.versioned` (shared with the dataset store): a crash or a
cancelled job never leaves a half-written model behind and never touches the active one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from adaptrank.core.versioned import CARD, NAME_RE, VersionedStore, validate_name, write_atomic

# NAME_RE and validate_name are imported from here by the model-facing modules
__all__ = ["ACTIVE", "CARD", "NAME_RE", "ModelCard", "ModelRef", "ModelStore", "validate_name"]

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


class ModelStore(VersionedStore):
    kind = "model"
    pointer = ACTIVE

    def active_version(self, name: str) -> str | None:
        return self.pointed_version(name)

    def get(self, name: str, version: str | None = None) -> ModelRef:
        """The named version, or the active one. Raises NotFoundError naming what exists."""
        version, path, active = self.locate(name, version, "has no active version")
        card = ModelCard.model_validate_json((path / CARD).read_text())
        return ModelRef(name=name, version=version, path=path, card=card, active=version == active)

    def list(self) -> list[ModelRef]:
        return [self.get(n, v) for n in self.names() for v in self.versions(n)]

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def writing(self, name: str, card: dict[str, Any] | ModelCard, version: str | None = None) -> Iterator[Path]:
        """Yield a temp directory to write weights into; on success it becomes a version.

        On an exception (a failed or cancelled run, a full disk) the temp directory is removed and
        the store is exactly as it was.
        """
        validate_name(name, "model")
        version = validate_name(version, "version") if version else self.new_version_id(name)
        with self.writing_version(name, version, f"{name}/{version} already exists") as tmp:
            yield tmp
            data = card.model_dump() if isinstance(card, ModelCard) else dict(card)
            data.update(name=name, version=version)
            card_obj = ModelCard.model_validate(data)
            write_atomic(tmp / CARD, card_obj.model_dump_json(indent=2))

    def activate(self, name: str, version: str) -> None:
        self.get(name, version)  # must exist
        self.set_pointer(name, version)

    def update_card(self, name: str, version: str, **fields: Any) -> ModelCard:
        ref = self.get(name, version)
        card = ref.card.model_copy(update=fields)
        write_atomic(ref.path / CARD, card.model_dump_json(indent=2))
        return card

    def cache_dir(self, ref: ModelRef, kind: str) -> Path:
        """A per-version cache folder (ONNX exports and the like), rebuilt if deleted."""
        return ref.path / ".cache" / validate_name(kind, "kind")
