"""Turn a model spec into a scorer.

Specs, in the order they are tried:

* ``zero-shot`` — the bi-encoder default on the offline MiniLM weights;
* ``bi-encoder:<path or HF id>`` / ``cross-encoder:<path or HF id>`` — an explicit backend;
* a model-store name (``my-reranker``, or ``my-reranker@v2026...`` for a pinned version) — its
  ``card.json`` says which backend loads it;
* an existing local directory, or an HF id (``org/name``) — a cross-encoder.

Path spellings fold into one (``p``, ``p/``, ``p//``, ``p/.``: see :mod:`adaptrank.core.modelspec`),
and ``Resolved.key`` says which loaded model a spec shares with others. This module decides what a
spec *means*; whether a request may name it is :class:`adaptrank.core.modelspec.ModelAccess`'s call.
It is private to ``core/engine``: other parts use :class:`~adaptrank.core.engine.Reranker` or the
public :mod:`adaptrank.core.engine.models`.

Backends are a table of lazily imported loaders, so a new backend is one line here.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptrank.core.engine.base import ModelIdentity, Scorer
from adaptrank.core.errors import NotFoundError
from adaptrank.core.modelspec import ZERO_SHOT, canonical_target, identity, split_prefix
from adaptrank.core.modelstore import NAME_RE, ModelStore
from adaptrank.core.settings import Settings

#: backend name -> "module:function" taking (path, name, version, settings, card) -> Scorer
BACKENDS: dict[str, str] = {
    "cross-encoder": "adaptrank.core.engine.registry:_load_cross_encoder",
    "bi-encoder": "adaptrank.core.engine.registry:_load_bi_encoder",
    "residual": "adaptrank.core.engine.residual:load_scorer",
}


@dataclass(frozen=True)
class Resolved:
    """Where a spec points: enough to load it and to know when it changed."""

    name: str
    version: str
    backend: str
    path: str | None  # None: the default embedding weights
    card: dict[str, Any] | None = None
    store_name: str | None = None  # set for model-store models (hot-swappable)
    key: str = ""  # the loaded model this spec shares with its other spellings

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", identity(self.backend, self.path or self.name))

    @property
    def identity(self) -> ModelIdentity:
        """The public view: name, version, backend, card."""
        return ModelIdentity(self.name, self.version, self.backend, self.card)


def folder_fingerprint(path: str) -> str:
    """A version string for a model folder outside the store (file names, sizes, mtimes): it
    changes when the weights change, so cached scores of the old weights are not served."""
    p = Path(path)
    if "\0" not in path and p.is_dir():
        stamps = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in p.iterdir() if f.is_file())
        return hashlib.sha1(repr(stamps).encode()).hexdigest()[:12]
    return "hub"


def resolve(spec: str, store: ModelStore) -> Resolved:
    if spec == ZERO_SHOT:
        from adaptrank.core.engine.biencoder import default_embedding_path

        return Resolved(ZERO_SHOT, "all-minilm-l6-v2", "bi-encoder", default_embedding_path(), key=ZERO_SHOT)
    backend, target = split_prefix(spec)
    if backend is not None:
        target = canonical_target(target)
        return Resolved(f"{backend}:{target}", folder_fingerprint(target), backend, target)
    name, _, version = spec.partition("@")
    if NAME_RE.match(name) and store.versions(name):
        ref = store.get(name, version or None)
        return Resolved(
            name,
            ref.version,
            ref.card.backend,
            str(ref.path),
            ref.card.model_dump(),
            store_name=name,
            key=f"store:{name}@{ref.version}",
        )
    if "\0" not in spec and Path(spec).is_dir():
        target = canonical_target(spec)
        return Resolved(target, folder_fingerprint(target), "cross-encoder", target)
    if "/" in spec and not spec.startswith(("/", ".")):
        return Resolved(spec, "hub", "cross-encoder", spec)  # an HF hub id
    known = [ZERO_SHOT, *store.names()]
    raise NotFoundError(
        "model",
        f"unknown model {spec!r}. Known: {known}; or pass a local path, an HF id "
        "('org/name'), or 'cross-encoder:<path>' / 'bi-encoder:<path>'.",
    )


def load(resolved: Resolved, settings: Settings) -> Scorer:
    target = BACKENDS.get(resolved.backend)
    if target is None:
        raise NotFoundError("model", f"{resolved.name!r} needs unknown backend {resolved.backend!r}")
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)(resolved, settings)


def _load_cross_encoder(resolved: Resolved, settings: Settings) -> Scorer:
    from adaptrank.core.engine.crossencoder import CrossEncoderScorer

    scorer = CrossEncoderScorer.from_settings(resolved.path, settings, name=resolved.name, version=resolved.version)
    if scorer.device == "cpu":
        from adaptrank.core.engine.crossencoder import cpu_has_native_bf16

        if settings.precision == "fast" and settings.onnx != "int8" and cpu_has_native_bf16():
            scorer.use_cpu_bf16()
        elif settings.onnx != "off":
            from adaptrank.core.engine.onnx import attach_onnx_runtime

            attach_onnx_runtime(scorer, settings, resolved)
    return scorer


def _load_bi_encoder(resolved: Resolved, settings: Settings) -> Scorer:
    from adaptrank.core.engine.biencoder import BiEncoderScorer

    return BiEncoderScorer(resolved.path, name=resolved.name, version=resolved.version, device=settings.device)
