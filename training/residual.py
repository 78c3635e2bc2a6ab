"""Training-side pieces of the *residual* reranker: the adapted model starts as the zero-shot
scorer and learns only a correction on top of it.

Why: no pretrained cross-encoder ships offline, and a bare encoder learns to cross-encode slowly
(a MiniLM cross-encoder trained with LCE on 600 real groups reached 0.46 nDCG@10 where the zero-shot
bi-encoder reaches 0.70). So the correction must be zero at step 0:

* ``query-encoder``: the passage side stays the frozen zero-shot bi-encoder (its embeddings are
  computed once, here, by :class:`PassageBank`); only a copy of the *query* tower is trained, with
  LCE over the frozen passage embeddings (:class:`FrozenPassageLCE`). Step 0 is exactly the
  zero-shot ranking; training costs a forward/backward over short queries only, so it fits a CPU.
* ``residual`` cross-encoder: score = cos(q, d) / tau + CE(q, d), the CE head zero-initialised
  (:func:`zero_head`); the priors travel in the dataset's ``label`` column (see
  :class:`adaptrank.training.lce.LCELoss`).

Serving lives in :mod:`adaptrank.core.engine.residual`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from adaptrank.core.progress import CountProgress
from adaptrank.core.vectors import embed_texts
from adaptrank.training.lce import lce


class PassageBank:
    """Unique passages and their frozen, normalised prior embeddings (computed once)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(dict.fromkeys(texts))
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def ids(self, texts: Sequence[str]) -> list[int]:
        return [self.index[t] for t in texts]

    def embed(
        self,
        model,
        batch_size: int = 64,
        progress: CountProgress | None = None,
        check: Callable[[], None] | None = None,
        cache: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Embed every passage with ``model`` (a SentenceTransformer), longest first so batches pad
        little; ``check`` runs between batches (it raises to cancel). ``cache`` (text -> vector, for
        this model only) lets repeated runs in one process skip passages already embedded."""
        out = np.zeros((len(self.texts), model.get_embedding_dimension()), dtype=np.float32)
        todo = []
        for i, t in enumerate(self.texts):
            hit = cache.get(t) if cache is not None else None
            if hit is not None:
                out[i] = hit
            else:
                todo.append(i)
        from adaptrank.core.engine.crossencoder import training_autocast

        order = sorted(todo, key=lambda i: -len(self.texts[i]))
        for lo in range(0, len(order), batch_size):
            if check is not None:
                check()
            idx = order[lo : lo + batch_size]
            with training_autocast(str(model.device)):
                out[idx] = embed_texts(model, [self.texts[i] for i in idx], batch_size=batch_size)
            if cache is not None:
                for i in idx:
                    cache[self.texts[i]] = out[i]
            if progress is not None:
                progress(min(lo + batch_size, len(order)), len(order))
        self.embeddings = out
        return out


class FrozenPassageLCE(nn.Module):
    """LCE for a query tower against frozen passage embeddings.

    Dataset columns: ``query`` (text) and ``label`` (G passage ids into the bank, positive first).
    score(q, d_j) = cos(f(q), e_j) / tau, where e_j is the frozen prior embedding; loss = LCE.
    """

    def __init__(
        self, model, passage_embeddings: np.ndarray | Tensor, tau: float = 0.05, in_batch: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.tau = float(tau)
        self.in_batch = in_batch
        bank = torch.as_tensor(np.asarray(passage_embeddings), dtype=torch.float32)
        self.register_buffer("bank", bank, persistent=False)

    def forward(self, sentence_features, labels: Tensor) -> Tensor:
        features = list(sentence_features)
        q = self.model(features[0])["sentence_embedding"]
        q = nn.functional.normalize(q.float(), dim=-1)
        labels = labels.to(q.device).long()
        bank = self.bank.to(q.device)
        if not self.in_batch:
            scores = torch.einsum("bd,bgd->bg", q, bank[labels]) / self.tau  # [B, G]
            return lce(scores)
        # Every passage of the batch is a candidate for every query (frozen passages make them free);
        # a query's own positive is its target, the other queries' passages extra negatives.
        ids, inverse = torch.unique(labels, return_inverse=True)
        scores = q @ bank[ids].T / self.tau  # [B, U]
        return nn.functional.cross_entropy(scores, inverse[:, 0])

    def get_config_dict(self) -> dict[str, float | str]:
        return {"loss": "lce-frozen-passages" + ("+in-batch" if self.in_batch else ""), "tau": self.tau}


def zero_head(cross_encoder) -> None:
    """Zero the last linear layer of a one-logit cross-encoder, so its score starts at 0 and the
    residual model starts exactly at the prior."""
    hf = cross_encoder.model
    last = None
    for name in ("classifier", "score", "out_proj"):
        mod = getattr(hf, name, None)
        if isinstance(mod, nn.Linear):
            last = mod
        elif mod is not None and isinstance(getattr(mod, "out_proj", None), nn.Linear):
            last = mod.out_proj
        if last is not None:
            break
    if last is None:
        linears = [m for m in hf.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
        if not linears:
            raise ValueError("cannot find the cross-encoder's one-logit head to zero")
        last = linears[-1]
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
