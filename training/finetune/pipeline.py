"""The run, end to end: read the dataset, resolve the base model and the method, train, save a new
version atomically with its card and dev metrics, and promote it only if it wins on dev."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

from adaptrank.core.engine.models import load_scorer, load_version_folder
from adaptrank.core.errors import AdaptRankError, Cancelled, write_failure
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.progress import StepProgress
from adaptrank.core.settings import Settings, get_settings
from adaptrank.training import promotion
from adaptrank.training.finetune.base_models import resolve_base, resolve_method
from adaptrank.training.finetune.bi_encoder import train_bi_encoder
from adaptrank.training.finetune.cross_encoder import train_cross_encoder, train_residual
from adaptrank.training.finetune.data import dev_metrics, load_dataset_groups
from adaptrank.training.finetune.params import (
    DEFAULT_LR,
    DEFAULT_MAX_LENGTH,
    FinetuneParams,
    FinetuneResult,
    parse_params,
)
from adaptrank.training.finetune.query_encoder import train_query_encoder
from adaptrank.training.finetune.run import Run, Trained

#: training method -> the function that trains it
METHODS: dict[str, Callable[[Run, str], Trained]] = {
    "query-encoder": train_query_encoder,
    "residual": train_residual,
    "cross-encoder": train_cross_encoder,
    "bi-encoder": train_bi_encoder,
}


def finetune(
    params: FinetuneParams | dict[str, Any],
    settings: Settings | None = None,
    *,
    progress: StepProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    store: ModelStore | None = None,
) -> FinetuneResult:
    """Train, save a new version (atomically, with its card), and promote it if it wins on dev."""
    t_start = time.perf_counter()
    p = params if isinstance(params, FinetuneParams) else parse_params(params)
    settings = settings or get_settings()
    store = store or ModelStore(settings.models_dir)
    seconds: dict[str, float] = {}
    rank = int(os.environ.get("RANK", "0"))

    def report(done: float, total: float | None, message: str | None) -> None:
        if progress is not None and rank == 0:
            progress(done, total, message)

    def check() -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("fine-tuning was cancelled; the model store is unchanged")

    report(0, None, "reading the dataset")
    dataset, train, dev, dropped = load_dataset_groups(p, settings)
    base = resolve_base(p.base_model, store)
    method = resolve_method(p, base)
    name = p.model_name
    baseline = promotion.baseline_spec(store, name)
    check()

    _seed_everything(p.seed)
    t0 = time.perf_counter()
    run = Run(p, settings, train, dev, base, method, report, check)
    with tempfile.TemporaryDirectory(prefix="adaptrank-train-") as out_dir:
        trained = METHODS[method](run, out_dir)
    seconds["train"] = time.perf_counter() - t0
    check()
    result = FinetuneResult(
        name=name,
        method=method,
        base_model=base.spec,
        dataset=dataset,
        baseline=baseline,
        train_groups=len(train),
        dev_groups=len(dev),
        dropped_groups=dropped,
        steps=trained.steps,
        best_step=trained.best_step,
        rank=rank,
    )
    if rank != 0:  # DDP: rank 0 writes and promotes; the other ranks only trained
        result.seconds = {k: round(v, 2) for k, v in seconds.items()}
        return result

    # metrics before: the model this one must beat, on the same dev groups
    t0 = time.perf_counter()
    before: dict[str, float] = {}
    per_group: dict[str, Any] = {}  # "before"/"after": [groups, 2] arrays for the paired gate
    if dev:
        report(0, None, f"scoring the dev split with the baseline ({baseline})")
        before, per_group["before"] = dev_metrics(load_scorer(baseline, store, settings).score_pairs, dev)
    check()
    hyper = p.model_dump(exclude={"dataset", "output_name", "promote", "min_delta"})
    hyper.update(
        method=method,
        learning_rate=p.learning_rate or DEFAULT_LR[method],
        max_length=p.max_length or DEFAULT_MAX_LENGTH[method],
        train_groups=len(train),
        dev_groups=len(dev),
        dropped_groups=dropped,
        steps=trained.steps,
        best_step=trained.best_step,
    )
    card: dict[str, Any] = {
        "backend": trained.backend,
        "base_model": base.spec,
        "dataset": dataset,
        "loss": trained.loss,
        "hyperparameters": hyper,
        "metrics_before": before,
        "extra": {**trained.card_extra, "baseline": baseline, "history": trained.history[-200:]},
    }
    version = store.new_version_id(name)
    report(0, None, "saving the model")
    try:
        with store.writing(name, card, version=version) as tmp:
            trained.save(tmp)
            check()
            if dev:
                report(0, None, "scoring the dev split with the saved model")
                saved = load_version_folder(
                    tmp,
                    name=name,
                    version=version,
                    backend=trained.backend,
                    card={**card, "name": name, "version": version},
                    settings=settings,
                )
                card["metrics_after"], per_group["after"] = dev_metrics(saved.score_pairs, dev)
            check()
    except Cancelled:
        raise
    except Exception as exc:
        reason = write_failure(exc)
        if reason is not None:
            raise AdaptRankError(
                f"could not save model {name!r} to {store.root}: {reason}; nothing was written "
                "and the active model is unchanged"
            ) from exc
        raise
    seconds["save_and_eval"] = time.perf_counter() - t0
    ref = store.get(name, version)
    column = 0 if p.metric.startswith("mrr") else 1
    paired = human = None
    if len(per_group) == 2:
        paired = (per_group["after"][:, column], per_group["before"][:, column])
        people = [i for i, g in enumerate(dev) if g.query_type in promotion.HUMAN_QUERY_TYPES]
        human = (paired[0][people], paired[1][people])
    decision = promotion.decide(
        p.metric,
        card.get("metrics_after", {}),
        before,
        baseline=baseline,
        force=p.promote,
        min_delta=p.min_delta,
        paired=paired,
        human=human,
    )
    promotion.apply(store, name, version, decision)
    seconds["total"] = time.perf_counter() - t_start
    store.update_card(name, version, extra={**ref.card.extra, "promotion": decision.model_dump(), "seconds": seconds})
    result.version = version
    result.path = str(ref.path)
    result.promoted = decision.promote
    result.decision = decision.reason
    result.metrics_before = before
    result.metrics_after = card.get("metrics_after", {})
    result.seconds = {k: round(v, 2) for k, v in seconds.items()}
    report(1, 1, f"done: {name}@{version} ({decision.reason})")
    return result


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)
