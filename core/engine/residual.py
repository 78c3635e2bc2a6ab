"""The *residual* reranker: the zero-shot bi-encoder score plus a learned correction.

    score(q, d) = cos(E_q(q), E_p(d)) / tau  [+ CE(q, d)]

* ``E_p`` is the frozen prior bi-encoder (by default the offline all-MiniLM-L6-v2, the zero-shot
  default) for passages;
* ``E_q`` is the fine-tuned query tower when the model has one (``query_encoder``), else ``E_p``;
* ``CE`` is an optional cross-encoder correction whose head started at zero (``cross_encoder``).

At step 0 (no training) this ranks exactly like the zero-shot default (scores scaled by 1/tau), so
fine-tuning can only move the ranking where the training signal says so. Fine-tuning writes these
models (``adaptrank.training.finetune``); the card's ``extra.residual`` says which parts exist::

    {"prior": "zero-shot" | "prior", "tau": 0.05, "query_encoder": "query_encoder" | null,
     "cross_encoder": "cross_encoder" | null}

(paths are relative to the version directory). Passage embeddings are kept in a bounded LRU, so a
passage that appears in many requests (an agent's merged pools, an evaluation) is embedded once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adaptrank.core.engine.cache import VectorCache, shared_vectors
from adaptrank.core.errors import NotFoundError
from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.settings import Settings
from adaptrank.core.vectors import embed_texts


def part_path(root: Path, rel: str, what: str) -> str:
    """The folder of one part of a residual model (``rel`` from its card), inside ``root``."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_dir():
        raise NotFoundError("model", f"residual {what} {rel!r} is missing under {root}")
    return str(path)


class ResidualScorer:
    backend = "residual"

    def __init__(
        self,
        prior: Any,
        *,
        query_encoder: Any = None,
        cross_encoder: Any = None,
        tau: float = 0.05,
        name: str = "residual",
        version: str = "0",
        batch_size: int = 64,
        cache_passages: int = 20_000,
        prior_path: str | None = None,
    ) -> None:
        """``prior``/``query_encoder``: SentenceTransformer objects; ``cross_encoder``: a scorer
        with ``score_pairs`` returning raw logits (e.g. ``CrossEncoderScorer``). ``prior_path``:
        the prior's folder, whose fingerprint says which stored passage vectors it can reuse."""
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.prior = prior
        self.query_encoder = query_encoder
        self.cross_encoder = cross_encoder
        self.tau = float(tau)
        self.name = name
        self.version = version
        self.batch_size = batch_size
        self.prior_path = prior_path
        # passages go through the prior only: share their vectors with every scorer of the same prior
        self._cache = (
            shared_vectors(self.passage_fingerprint(), cache_passages) if prior_path else VectorCache(cache_passages)
        )

    @property
    def dense(self) -> bool:
        """Without a cross-encoder term the score is a dot product of two towers (the bi-encoder
        family): passages can come pre-embedded (e.g. from Chroma) and queries can retrieve."""
        return self.cross_encoder is None

    def passage_fingerprint(self) -> str:
        from adaptrank.core.embeddings import model_fingerprint

        return model_fingerprint(self.prior_path)

    def _encode(self, model: Any, texts: list[str]) -> np.ndarray:
        return embed_texts(model, texts, batch_size=self.batch_size)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(self.query_encoder or self.prior, texts)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._cache.embed(texts, lambda missing: self._encode(self.prior, missing))

    def score_embedded(self, query_vectors: np.ndarray, passage_vectors: np.ndarray) -> np.ndarray:
        """``[queries, passages]`` scores from vectors (dense models only)."""
        return (np.asarray(query_vectors) @ np.asarray(passage_vectors, dtype=np.float32).T).astype(
            np.float64
        ) / self.tau

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(d for _, d in pairs))
        qpos = {t: i for i, t in enumerate(queries)}
        dpos = {t: i for i, t in enumerate(passages)}
        q = self.embed_queries(queries)
        d = self.embed_passages(passages)
        qi = np.fromiter((qpos[a] for a, _ in pairs), dtype=np.int64, count=len(pairs))
        di = np.fromiter((dpos[b] for _, b in pairs), dtype=np.int64, count=len(pairs))
        scores = (q[qi] * d[di]).sum(axis=1).astype(np.float64) / self.tau
        if self.cross_encoder is not None:
            scores = scores + np.asarray(self.cross_encoder.score_pairs(pairs), dtype=np.float64)
        return scores


def load_scorer(resolved: Any, settings: Settings) -> ResidualScorer:
    """Registry loader for card backend ``residual`` (see ``registry.BACKENDS``)."""
    from adaptrank.core.engine.biencoder import default_embedding_path, load_sentence_transformer

    root = Path(resolved.path)
    card = resolved.card or {}
    spec = (card.get("extra") or {}).get("residual")
    if not isinstance(spec, dict):
        raise NotFoundError("model", f"{resolved.name!r} has backend 'residual' but its card has no extra.residual")
    prior_spec = spec.get("prior") or ZERO_SHOT
    prior_path = default_embedding_path() if prior_spec == ZERO_SHOT else part_path(root, prior_spec, "prior")
    prior = load_sentence_transformer(prior_path, settings.device)
    query_encoder = None
    if spec.get("query_encoder"):
        query_encoder = load_sentence_transformer(
            part_path(root, spec["query_encoder"], "query encoder"), settings.device
        )
    cross_encoder = None
    if spec.get("cross_encoder"):
        from adaptrank.core.engine.crossencoder import CrossEncoderScorer

        cross_encoder = CrossEncoderScorer.from_settings(
            part_path(root, spec["cross_encoder"], "cross-encoder"),
            settings,
            name=f"{resolved.name}/correction",
            version=resolved.version,
        )
    return ResidualScorer(
        prior,
        query_encoder=query_encoder,
        cross_encoder=cross_encoder,
        tau=float(spec.get("tau", 0.05)),
        name=resolved.name,
        version=resolved.version,
        prior_path=prior_path,
    )
