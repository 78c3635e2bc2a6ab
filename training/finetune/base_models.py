"""Where ``base_model`` points (the zero-shot default, a model-store version, a local folder, a hub id),
and loading it for training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adaptrank.core.errors import InputError
from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.modelstore import NAME_RE, ModelStore
from adaptrank.training.finetune.params import DEFAULT_METHOD, FinetuneParams


@dataclass
class Base:
    spec: str  # what the card records
    path: str  # what loaders take
    kind: Literal["cross-encoder", "sentence-transformer", "encoder", "hub"]


def default_encoder_path() -> str:
    from adaptrank.core.engine.biencoder import default_embedding_path

    return default_embedding_path()


def _local_kind(path: Path) -> Literal["cross-encoder", "sentence-transformer", "encoder"]:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise InputError("base_model", f"{path} has no config.json (not a transformers model folder)")
    cfg = json.loads(cfg_path.read_text())
    archs = cfg.get("architectures") or []
    if (
        archs
        and archs[0].endswith("ForSequenceClassification")
        and cfg.get("num_labels", len(cfg.get("id2label") or {0: 0})) == 1
    ):
        return "cross-encoder"
    if (path / "modules.json").is_file():
        return "sentence-transformer"
    return "encoder"


def resolve_base(spec: str | None, store: ModelStore) -> Base:
    """Where ``base_model`` points. Unknown names fail here, before any work."""
    if spec is None or spec == ZERO_SHOT:
        return Base(ZERO_SHOT, default_encoder_path(), "sentence-transformer")
    name, _, version = spec.partition("@")
    if NAME_RE.match(name) and store.versions(name):
        ref = store.get(name, version or None)
        if ref.card.backend == "residual":
            raise InputError("base_model", f"{spec!r} is a residual model; start from its base or from 'zero-shot'")
        return Base(f"{name}@{ref.version}", str(ref.path), _local_kind(ref.path))
    path = Path(spec).expanduser()
    if path.is_dir():
        return Base(str(path.resolve()), str(path.resolve()), _local_kind(path))
    if "/" in spec and not spec.startswith((".", "/", "~")) and spec.count("/") == 1:
        return Base(spec, spec, "hub")
    known = [ZERO_SHOT, *store.names()]
    raise InputError(
        "base_model",
        f"unknown model {spec!r}: not a model-store name ({known}), a local folder, or an HF id 'org/name'",
    )


def resolve_method(p: FinetuneParams, base: Base) -> str:
    if p.method != "auto":
        return p.method
    return "cross-encoder" if base.kind in ("cross-encoder", "hub") and base.spec != ZERO_SHOT else DEFAULT_METHOD


def _load_error(spec: str, exc: Exception) -> InputError:
    return InputError("base_model", f"could not load {spec!r}: {type(exc).__name__}: {exc}")


def load_bi_encoder(base: Base, device: str | None):
    from adaptrank.core.engine.biencoder import load_sentence_transformer

    if base.kind == "cross-encoder":
        raise InputError(
            "base_model", f"{base.spec!r} is a cross-encoder; this method needs a bi-encoder or an encoder"
        )
    try:
        return load_sentence_transformer(base.path, device)
    except Exception as exc:
        raise _load_error(base.spec, exc) from exc


def load_cross_encoder_for_training(base: Base, device: str | None, max_length: int, identity: bool):
    from sentence_transformers import CrossEncoder
    from torch import nn

    from adaptrank.core.engine.crossencoder import pick_device

    try:
        ce = CrossEncoder(
            base.path,
            num_labels=1,
            max_length=max_length,
            device=pick_device(device),
            trust_remote_code=False,
            activation_fn=nn.Identity() if identity else None,
        )
    except Exception as exc:
        raise _load_error(base.spec, exc) from exc
    return ce


def freeze_bottom(hf_model, layers: int) -> int:
    """Freeze the embeddings and the bottom ``layers`` transformer layers; returns how many froze."""
    if layers <= 0:
        return 0
    encoder = None
    for attr in ("bert", "roberta", "deberta", "electra", "xlm_roberta", "distilbert", "model"):
        encoder = getattr(hf_model, attr, None)
        if encoder is not None:
            break
    encoder = encoder or hf_model
    blocks = getattr(getattr(encoder, "encoder", None), "layer", None) or getattr(
        getattr(encoder, "transformer", None), "layer", None
    )
    if blocks is None:
        raise InputError("freeze_layers", "this architecture's layers are not recognised; use freeze_layers=0")
    if layers > len(blocks):
        raise InputError("freeze_layers", f"is {layers}; the model has {len(blocks)} layers")
    for p in encoder.embeddings.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[:layers]:
        for p in block.parameters():
            p.requires_grad_(False)
    return layers
