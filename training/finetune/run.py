"""What every training method shares: the run's data, base model and callbacks (``Run``), the
trainer arguments, and what a method returns (``Trained``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptrank.core.progress import StepProgress
from adaptrank.core.settings import Settings
from adaptrank.training.dataset import Group
from adaptrank.training.evaluate import group_candidates
from adaptrank.training.finetune.base_models import Base
from adaptrank.training.finetune.callbacks import Monitor
from adaptrank.training.finetune.data import dev_metrics
from adaptrank.training.finetune.params import DEFAULT_LR, FinetuneParams


@dataclass
class Trained:
    """A trained model in memory and how to write it to a version directory."""

    backend: str
    save: Callable[[Path], None]
    card_extra: dict[str, Any]
    loss: str
    steps: int = 0
    best_step: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def training_args(cls, p: FinetuneParams, method: str, out_dir: str, steps_per_epoch: int, has_dev: bool, **extra):
    import torch

    from adaptrank.core.engine.crossencoder import cpu_has_native_bf16

    eval_every = p.eval_every or max(1, math.ceil(steps_per_epoch / 4))
    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_native_bf16()
    bf16 = p.precision == "bf16" or (p.precision == "auto" and bool(native))
    kwargs: dict[str, Any] = dict(
        output_dir=out_dir,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size,
        gradient_accumulation_steps=p.grad_accumulation,
        learning_rate=p.learning_rate or DEFAULT_LR[method],
        warmup_steps=p.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        lr_scheduler_type=p.scheduler,
        weight_decay=0.01,
        seed=p.seed,
        data_seed=p.seed,
        bf16=bf16,
        eval_strategy="steps" if has_dev else "no",
        eval_steps=eval_every if has_dev else None,
        save_strategy="no",
        logging_steps=max(1, min(10, eval_every)),
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **extra,
    )
    if not torch.cuda.is_available() and (bf16 or is_distributed()):
        kwargs["use_cpu"] = True  # bf16 on a CPU, and accelerate's MULTI_CPU DDP, need it said
    if is_distributed() and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # CPU-only DDP
    return cls(**kwargs)


class Run:
    """One fine-tuning run: data, base model, method; ``train()`` returns a :class:`Trained`."""

    def __init__(
        self,
        p: FinetuneParams,
        settings: Settings,
        train: list[Group],
        dev: list[Group],
        base: Base,
        method: str,
        report: StepProgress,
        check: Callable[[], None],
    ) -> None:
        self.p = p
        self.settings = settings
        self.train_groups = train
        self.dev = dev
        self.base = base
        self.method = method
        self.report = report
        self.check = check
        self.G = p.group_size
        self.metric_key = f"eval_dev_{p.metric}"

    # shared pieces -------------------------------------------------------------------------------
    def rows(self) -> list[tuple[str, list[str]]]:
        """(query, [positive, G-1 negatives]) per training group."""
        return [(g.query, [g.positive, *g.negatives[: self.G - 1]]) for g in self.train_groups]

    def bank(self, prior, prior_path: str) -> Any:
        """Every train and dev passage embedded once by the frozen ``prior`` (residual methods)."""
        from adaptrank.core.embeddings import passage_vectors  # chromadb, torch: only when a method needs them
        from adaptrank.training.residual import PassageBank

        texts = [t for _, ts in self.rows() for t in ts] + [t for g in self.dev for t in group_candidates(g)[0]]
        bank = PassageBank(texts)
        cache = passage_vectors(prior_path)  # shared with generation's miner: adapt embeds a passage once
        self.report(0, None, f"embedding {len(bank)} passages with the prior")
        bank.embed(
            prior, progress=lambda d, t: self.report(d, t, f"embedding passages {d}/{t}"), check=self.check, cache=cache
        )
        return bank

    def fit(self, trainer, model) -> Monitor:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # stdout belongs to the CLI's result and to MCP over stdio
        monitor = Monitor(model, self.metric_key, self.p.patience, self.report, self.check)
        trainer.add_callback(monitor.callback)
        if self.dev and trainer.evaluator is not None:
            # Step 0 joins the early-stopping race (for residual methods: the prior itself). Called
            # directly, not through trainer.evaluate(): that marks the model accelerate-prepared, and
            # train() would then skip the DDP wrap (each rank training alone).
            metrics = trainer.evaluator(model)
            monitor.observe(0, float(metrics[trainer.evaluator.primary_metric]))
            self.report(0, None, monitor.message())
        trainer.train()
        monitor.restore_best()
        return monitor

    def steps_per_epoch(self) -> int:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return max(1, math.ceil(len(self.train_groups) / (self.p.batch_size * self.p.grad_accumulation * world)))

    def dev_rank(self, score_pairs) -> dict[str, float]:
        """The dev metrics of the model in training (its evaluator's result)."""
        return dev_metrics(score_pairs, self.dev)[0]
