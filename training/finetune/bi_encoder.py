"""``bi-encoder``: both towers of the bi-encoder, MultipleNegativesRankingLoss with the hard negatives
(served by the existing ``bi-encoder`` backend)."""

from __future__ import annotations

from pathlib import Path

from adaptrank.core.vectors import embed_texts
from adaptrank.training.finetune.base_models import freeze_bottom, load_bi_encoder
from adaptrank.training.finetune.callbacks import dev_evaluator
from adaptrank.training.finetune.run import Run, Trained, training_args


def train_bi_encoder(run: Run, out_dir: str) -> Trained:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    model = load_bi_encoder(run.base, run.settings.device)
    if run.p.max_length:
        model.max_seq_length = run.p.max_length
    freeze_bottom(model[0].model, run.p.freeze_layers)
    rows = run.rows()
    cols: dict[str, list] = {"query": [q for q, _ in rows], "positive": [ts[0] for _, ts in rows]}
    for j in range(1, run.G):
        cols[f"negative_{j}"] = [ts[j] for _, ts in rows]

    def score_groups(m) -> dict[str, float]:
        def score_pairs(pairs):
            texts = list(dict.fromkeys(t for pair in pairs for t in pair))
            e = embed_texts(m, texts)
            pos = {t: i for i, t in enumerate(texts)}
            return np.asarray([float(e[pos[q]] @ e[pos[d]]) for q, d in pairs])

        return run.dev_rank(score_pairs)

    from sentence_transformers.base.sampler import BatchSamplers

    args = training_args(
        SentenceTransformerTrainingArguments,
        run.p,
        "bi-encoder",
        out_dir,
        run.steps_per_epoch(),
        bool(run.dev),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(cols),
        loss=losses.MultipleNegativesRankingLoss(model, scale=1.0 / run.p.tau),
        evaluator=dev_evaluator(score_groups, f"dev_{run.p.metric}") if run.dev else None,
    )
    mon = run.fit(trainer, model)

    def save(path: Path) -> None:
        model.save(str(path))

    return Trained(
        "bi-encoder",
        save,
        {},
        "multiple negatives ranking (in-batch + hard negatives)",
        mon.step,
        mon.best_step,
        mon.history,
    )
