"""Localized Contrastive Estimation (LCE): softmax cross-entropy over one positive and G-1
localized hard negatives of the *same* query.

Gao, Dai & Callan, "Rethinking Training of BERT Rerankers in Multi-Stage Retrieval Pipelines",
ECIR 2021 (arXiv 2101.08751). For a query q with positive d+ and hard negatives d1..d_{G-1}
mined from the retriever the reranker will sit behind ("localized"):

    L = -log( exp(s(q, d+)) / (exp(s(q, d+)) + sum_j exp(s(q, d_j))) )

Used for the reranker in "Enhancing Transformer-Based Rerankers with Synthetic Data and LLM-Based
Supervision" (arXiv 2510.01229) and FlagEmbedding's reranker recipe (G = 8 by default).

sentence-transformers 6's cross-encoder ``MultipleNegativesRankingLoss`` computes exactly this
when it draws no in-batch negatives, applies no activation and scales by 1: its
``calculate_loss`` stacks the columns ``(positive, hard_neg_1, ..)`` into a ``[B, G]`` matrix and
takes cross-entropy against label 0. Its own ``num_negatives=0`` path calls
``torch.multinomial(.., 0)``, which raises, so :class:`LCELoss` draws no in-batch negatives and
scores all B*G pairs in one forward pass (upstream calls the model once per column, which DDP
refuses: a parameter may join only one backward per step), then reuses upstream's
``calculate_loss``.

The *residual* variant adds a fixed prior per pair (the zero-shot score divided by a
temperature) before the softmax, so the cross-encoder only learns a correction. The priors
travel in the dataset's ``label`` column (one list of G floats per row), which the cross-encoder
data collator passes through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss
from torch import Tensor, nn


def lce(scores: Tensor) -> Tensor:
    """LCE for a ``[B, G]`` score matrix whose column 0 holds the positives (mean over B)."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [batch, group>=2], got {tuple(scores.shape)}")
    return nn.functional.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


class LCELoss(MultipleNegativesRankingLoss):
    """LCE for sentence-transformers' ``CrossEncoderTrainer``.

    Dataset columns: ``query, positive, negative_1, .., negative_{G-1}`` (and, for the residual
    variant, ``label``: the G prior scores of the row, positive first).

    Args:
        model: a one-logit ``CrossEncoder``.
        prior_weight: multiplier for the per-pair priors in the ``label`` column; 0 ignores them
            (plain LCE). The residual reranker uses ``1/tau``.
    """

    def __init__(self, model, prior_weight: float = 0.0) -> None:
        super().__init__(model, num_negatives=0, scale=1.0, activation_fn=nn.Identity())
        self.prior_weight = float(prior_weight)

    def get_in_batch_negatives(self, anchors: list[str], candidates: list[list[str]]) -> Iterator[list[str]]:
        return iter(())  # localized negatives only: never borrow another query's passages

    def forward(
        self, inputs: list[list[str]], labels: Tensor | list[Tensor] | None = None, prompt=None, task=None
    ) -> Tensor:
        anchors, columns = inputs[0], inputs[1:]
        batch = len(anchors)
        # One forward pass over all B*G pairs (column-major, as upstream stacks them): faster than one
        # call per column, and DDP allows a parameter to join only one backward per step.
        pairs = [[a, c] for column in columns for a, c in zip(anchors, column, strict=True)]
        scores = list(self.call_model_with_pairs(pairs, prompt=prompt, task=task).split(batch))
        if self.prior_weight and labels is not None:
            prior = torch.stack(list(labels)) if isinstance(labels, list) else labels  # [B, G]
            scores = [s + self.prior_weight * prior[:, j].to(s.device, s.dtype) for j, s in enumerate(scores)]
        return self.calculate_loss(scores, batch)

    def get_config_dict(self) -> dict[str, float | str]:
        return {"loss": "lce", "prior_weight": self.prior_weight}
