"""``cross-encoder``: plain LCE on a cross-encoder; ``residual``: zero-shot cosine / tau plus a
cross-encoder term whose head starts at zero. One trainer serves both; they differ by the prior."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.vectors import embed_texts
from adaptrank.training.finetune.base_models import (
    Base,
    default_encoder_path,
    freeze_bottom,
    load_cross_encoder_for_training,
)
from adaptrank.training.finetune.callbacks import dev_evaluator
from adaptrank.training.finetune.params import DEFAULT_MAX_LENGTH
from adaptrank.training.finetune.run import Run, Trained, is_distributed, training_args


def train_residual(run: Run, out_dir: str) -> Trained:
    return _train_cross(run, out_dir, residual=True)


def train_cross_encoder(run: Run, out_dir: str) -> Trained:
    return _train_cross(run, out_dir, residual=False)


def _train_cross(run: Run, out_dir: str, residual: bool) -> Trained:
    import numpy as np
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from adaptrank.training.lce import LCELoss
    from adaptrank.training.residual import zero_head

    max_length = run.p.max_length or min(DEFAULT_MAX_LENGTH["cross-encoder"], run.settings.max_length)
    base = run.base
    if base.spec == ZERO_SHOT:
        base = Base(ZERO_SHOT, default_encoder_path(), "encoder")
    ce = load_cross_encoder_for_training(base, run.settings.device, max_length, identity=residual)
    freeze_bottom(ce.model, run.p.freeze_layers)
    rows = run.rows()
    cols: dict[str, list] = {"query": [q for q, _ in rows], "positive": [ts[0] for _, ts in rows]}
    for j in range(1, run.G):
        cols[f"negative_{j}"] = [ts[j] for _, ts in rows]
    tau = run.p.tau
    prior_of: Callable[[list[tuple[str, str]]], np.ndarray] | None = None
    if residual:
        from adaptrank.core.engine.biencoder import load_sentence_transformer

        zero_head(ce)
        prior = load_sentence_transformer(default_encoder_path(), run.settings.device)
        prior.eval()
        bank = run.bank(prior, default_encoder_path())
        emb = bank.embeddings
        q_all = list(dict.fromkeys([q for q, _ in rows] + [g.query for g in run.dev]))
        qe = embed_texts(prior, q_all)
        qpos = {q: i for i, q in enumerate(q_all)}
        cols["label"] = [[float(qe[qpos[q]] @ emb[bank.index[t]]) for t in ts] for q, ts in rows]

        def prior_of(pairs):
            return np.asarray([float(qe[qpos[q]] @ emb[bank.index[d]]) / tau for q, d in pairs])

    ds = Dataset.from_dict(cols)

    def score_groups(model) -> dict[str, float]:
        def score_pairs(pairs):
            with torch.inference_mode():
                s = model.predict(
                    pairs,
                    batch_size=32,
                    activation_fn=torch.nn.Identity(),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
            s = np.asarray(s, dtype=np.float64).reshape(-1)
            return s + prior_of(pairs) if prior_of is not None else s

        return run.dev_rank(score_pairs)

    method = "residual" if residual else "cross-encoder"
    args = training_args(
        CrossEncoderTrainingArguments,
        run.p,
        method,
        out_dir,
        run.steps_per_epoch(),
        bool(run.dev),
        # every parameter takes part in each step; searching for unused ones trips DDP's hooks here
        ddp_find_unused_parameters=False if is_distributed() else None,
    )
    trainer = CrossEncoderTrainer(
        model=ce,
        args=args,
        train_dataset=ds,
        loss=LCELoss(ce, prior_weight=1.0 / tau if residual else 0.0),
        evaluator=dev_evaluator(score_groups, f"dev_{run.p.metric}") if run.dev else None,
    )
    mon = run.fit(trainer, ce)
    if residual:

        def save(path: Path) -> None:
            ce.save(str(path / "cross_encoder"))

        extra = {"residual": {"prior": ZERO_SHOT, "tau": tau, "query_encoder": None, "cross_encoder": "cross_encoder"}}
        return Trained(
            "residual",
            save,
            extra,
            "lce (residual: cosine/tau prior + cross-encoder)",
            mon.step,
            mon.best_step,
            mon.history,
        )

    def save_ce(path: Path) -> None:
        ce.save(str(path))

    return Trained("cross-encoder", save_ce, {}, "lce", mon.step, mon.best_step, mon.history)
