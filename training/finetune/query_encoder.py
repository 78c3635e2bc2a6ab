"""``query-encoder``: a residual reranker whose passage side stays the frozen zero-shot bi-encoder; a
copy of its query tower is trained with LCE over the frozen passage embeddings. Step 0 ranks exactly
like the zero-shot default, and a step costs a forward/backward over short queries only."""

from __future__ import annotations

from pathlib import Path

from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.vectors import embed_texts
from adaptrank.training.finetune.base_models import freeze_bottom, load_bi_encoder
from adaptrank.training.finetune.callbacks import dev_evaluator
from adaptrank.training.finetune.params import DEFAULT_MAX_LENGTH
from adaptrank.training.finetune.run import Run, Trained, training_args


def train_query_encoder(run: Run, out_dir: str) -> Trained:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from adaptrank.training.residual import FrozenPassageLCE

    prior = load_bi_encoder(run.base, run.settings.device)
    prior.eval()
    bank = run.bank(prior, run.base.path)
    emb = bank.embeddings
    query_model = load_bi_encoder(run.base, run.settings.device)
    query_model.max_seq_length = run.p.max_length or DEFAULT_MAX_LENGTH["query-encoder"]
    freeze_bottom(query_model[0].model, run.p.freeze_layers)
    rows = run.rows()
    ds = Dataset.from_dict({"query": [q for q, _ in rows], "label": [bank.ids(ts) for _, ts in rows]})
    tau = run.p.tau

    def score_groups(model) -> dict[str, float]:
        def score_pairs(pairs):
            qs = list(dict.fromkeys(q for q, _ in pairs))
            qe = embed_texts(model, qs)
            pos = {q: i for i, q in enumerate(qs)}
            return np.asarray([float(qe[pos[q]] @ emb[bank.index[d]]) / tau for q, d in pairs])

        return run.dev_rank(score_pairs)

    args = training_args(
        SentenceTransformerTrainingArguments, run.p, "query-encoder", out_dir, run.steps_per_epoch(), bool(run.dev)
    )
    trainer = SentenceTransformerTrainer(
        model=query_model,
        args=args,
        train_dataset=ds,
        loss=FrozenPassageLCE(query_model, emb, tau, in_batch=run.p.in_batch_negatives),
        evaluator=dev_evaluator(score_groups, f"dev_{run.p.metric}") if run.dev else None,
    )
    mon = run.fit(trainer, query_model)
    if run.p.interpolation < 1.0:
        mix_weights(query_model, prior, run.p.interpolation)
    prior_spec = ZERO_SHOT if run.base.spec == ZERO_SHOT else "prior"

    def save(path: Path) -> None:
        query_model.save(str(path / "query_encoder"))
        if prior_spec != ZERO_SHOT:
            prior.save(str(path / "prior"))

    extra = {
        "residual": {"prior": prior_spec, "tau": tau, "query_encoder": "query_encoder", "cross_encoder": None},
        "interpolation": run.p.interpolation,
    }
    return Trained(
        "residual", save, extra, "lce (query tower vs frozen passages)", mon.step, mon.best_step, mon.history
    )


def mix_weights(model, base, alpha: float) -> None:
    """``model``'s weights become ``base + alpha * (model - base)``, in place (WiSE-FT, Wortsman et al.
    2022): the fine-tuned and the base tower averaged in weight space. Why: the tower is trained on
    generated queries only, and a mix keeps most of their gain while losing less where real
    questions differ from them. Both must be the same architecture (the tower is a copy of the base)."""
    import torch

    own, ref = model.state_dict(), base.state_dict()
    if own.keys() != ref.keys():
        raise ValueError("cannot mix towers of different architectures")
    with torch.no_grad():
        for key, value in own.items():
            if value.is_floating_point():
                value.copy_(torch.lerp(ref[key].to(value.dtype), value, alpha))
