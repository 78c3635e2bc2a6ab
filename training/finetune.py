"""Fine-tune a reranker on a generated dataset (groups of a query, a positive and hard negatives)
with the LCE loss, then save it to the model store and promote it only if it wins on dev.

Methods (``FinetuneParams.method``), each trained by a sentence-transformers trainer (so warm-up,
LR schedule, gradient accumulation, seeds, bf16 on GPU and DDP under ``torchrun`` /
``accelerate launch`` come from the Hugging Face Trainer):

* ``query-encoder`` (the default without a pretrained cross-encoder): a residual reranker. The
  passage side stays the frozen zero-shot bi-encoder; a copy of its query tower is trained with LCE
  over the frozen passage embeddings. Step 0 ranks exactly like the zero-shot default, and a step
  costs a forward/backward over short queries only, so it trains in minutes on a CPU.
* ``residual``: zero-shot cosine / tau + a cross-encoder term whose head starts at zero.
* ``cross-encoder``: plain LCE on a cross-encoder (the default when ``base_model`` *is* a
  pretrained cross-encoder, e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2`` where a hub is reachable).
* ``bi-encoder``: both towers of the bi-encoder, MultipleNegativesRankingLoss with the hard
  negatives (served by the existing ``bi-encoder`` backend).

docs/finetuning.md has the measured comparison behind the default.

Safety: the model is trained in memory, then written through ``ModelStore.writing()`` (a temp
directory renamed into place) with its dev metrics computed by the serving code on the saved files;
a failure or a cancel anywhere leaves the store as it was, and the active version changes only
through :mod:`adaptrank.training.promotion`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from adaptrank.core.errors import AdaptRankError, Cancelled, InputError, write_failure
from adaptrank.core.modelstore import NAME_RE, ModelStore, validate_name
from adaptrank.core.settings import Settings, get_settings
from adaptrank.training.dataset import DatasetStore, Group, read_groups

log = logging.getLogger(__name__)

Method = Literal["auto", "query-encoder", "residual", "cross-encoder", "bi-encoder"]
#: what ``method="auto"`` picks when the base is not a pretrained cross-encoder (see docs/finetuning.md)
DEFAULT_METHOD = "query-encoder"
ZERO_SHOT = "zero-shot"
Progress = Callable[[float, float | None, str | None], Any]

#: per-method defaults where the caller gives none. query-encoder 5e-5: on medquad-dev (1,558 generated
#: groups, 2 epochs) it reached 0.741 MRR@10 on the real questions against 0.732 at 2e-5 (docs/finetuning.md).
DEFAULT_LR = {"query-encoder": 5e-5, "residual": 3e-5, "cross-encoder": 3e-5, "bi-encoder": 2e-5}
DEFAULT_MAX_LENGTH = {"query-encoder": 64, "residual": 256, "cross-encoder": 256, "bi-encoder": 256}


class FinetuneParams(BaseModel):
    """Everything a fine-tuning run depends on (stored in the job and in the model card)."""

    dataset: str = Field(description="dataset name, or name@version (default: its latest version)")
    output_name: str | None = Field(None, description="model-store name (default: '<dataset>-reranker')")
    method: Method = "auto"
    base_model: str | None = Field(
        None,
        description="start from: 'zero-shot', a model-store name, a local path or an HF id "
        "(default: the offline MiniLM weights)",
    )
    epochs: float = Field(2.0, gt=0, le=100)
    group_size: int = Field(8, ge=2, le=128, description="1 positive + G-1 hard negatives per group")
    learning_rate: float | None = Field(None, gt=0, le=1)
    batch_size: int = Field(16, ge=1, le=4096, description="groups per step and device")
    grad_accumulation: int = Field(1, ge=1, le=1024)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    max_length: int | None = Field(
        None, ge=8, le=8192, description="tokens: query tokens (query-encoder) or pair tokens (cross-encoders)"
    )
    tau: float = Field(0.05, gt=0, le=1, description="temperature of the residual prior (cosine / tau)")
    freeze_layers: int = Field(0, ge=0, le=128, description="bottom encoder layers (and embeddings) kept frozen")
    in_batch_negatives: bool = Field(False, description="query-encoder: other queries' passages in the batch as extra negatives")
    eval_every: int | None = Field(None, ge=1, description="steps between dev evaluations (default: 4 per epoch)")
    # Default 0: the generated dev split is small and noisy. On medquad-dev, patience 3 stopped an lr-2e-5 run at
    # step 100 (+0.028 MRR@10 on real questions) where the full run gained +0.08; at lr 5e-5 the two tie
    # (+0.091 vs +0.087, docs/finetuning.md). The best dev checkpoint is kept either way.
    patience: int = Field(0, ge=0, le=1000, description="evaluations without a dev gain before stopping (0: never; the best dev checkpoint is kept)")
    max_groups: int | None = Field(None, ge=1, description="use at most this many training groups")
    metric: Literal["mrr@10", "ndcg@10"] = "mrr@10"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training arithmetic: auto = bf16 autocast where the GPU or CPU computes bf16 natively"
    )
    promote: bool | None = Field(None, description="None: only if it beats the active model on dev; True: force; False: never")
    min_delta: float = Field(0.0, ge=0, le=1, description="dev gain required to promote")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> FinetuneParams:
        name, _, version = self.dataset.partition("@")
        validate_name(name, "dataset")
        if version:
            validate_name(version, "dataset version")
        if self.output_name is not None:
            validate_name(self.output_name, "output_name")
        return self

    @property
    def model_name(self) -> str:
        if self.output_name:
            return self.output_name
        return validate_name(f"{self.dataset.partition('@')[0]}-reranker"[:64], "output_name")


class FinetuneResult(BaseModel):
    name: str
    version: str | None = None
    path: str | None = None
    method: str
    base_model: str
    dataset: str
    promoted: bool = False
    decision: str = ""
    baseline: str = ""
    metrics_before: dict[str, float] = Field(default_factory=dict)
    metrics_after: dict[str, float] = Field(default_factory=dict)
    train_groups: int = 0
    dev_groups: int = 0
    dropped_groups: int = 0
    steps: int = 0
    best_step: int | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    rank: int = 0


def parse_params(raw: dict[str, Any]) -> FinetuneParams:
    """Validate parameters; a bad one is an ``InputError`` naming the field and the limit."""
    try:
        return FinetuneParams.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first["msg"]).removeprefix("Value error, ")
        if first["loc"]:
            raise InputError(".".join(str(x) for x in first["loc"]), f"{msg} (got {first.get('input')!r})") from None
        field_name, _, rest = msg.partition(": ")
        raise InputError(field_name, rest or msg) from None


# -- data ---------------------------------------------------------------------------------------
def select_groups(groups: list[Group], group_size: int, split: str) -> tuple[list[Group], int]:
    """Groups with at least ``group_size - 1`` negatives; a clear error when too few qualify."""
    if not groups:
        raise InputError("dataset", f"the {split} split has no groups")
    need = group_size - 1
    counts = sorted(len(g.negatives) for g in groups)
    if counts[-1] == 0:
        raise InputError(
            "dataset",
            f"none of the {len(groups)} {split} groups has a hard negative; LCE needs a positive and at "
            "least one negative per group (regenerate with negatives >= 1)",
        )
    kept = [g for g in groups if len(g.negatives) >= need]
    if len(kept) * 2 < len(groups):
        median = counts[len(counts) // 2]
        raise InputError(
            "group_size",
            f"is {group_size}, so each group needs {need} negatives, but only {len(kept)} of {len(groups)} "
            f"{split} groups have that many (negatives per group: min {counts[0]}, median {median}, "
            f"max {counts[-1]}); use group_size <= {median + 1}",
        )
    return kept, len(groups) - len(kept)


def load_dataset_groups(p: FinetuneParams, settings: Settings) -> tuple[str, list[Group], list[Group], int]:
    """(dataset ref "name@version", train groups, dev groups, dropped train groups)."""
    name, _, version = p.dataset.partition("@")
    ref = DatasetStore(settings).get(name, version or None)
    train = read_groups(ref.file("train"), allow_empty=True)
    dev = read_groups(ref.file("dev"), allow_empty=True)
    if not train:
        raise InputError("dataset", f"{ref.name}@{ref.version} has an empty train split")
    train, dropped = select_groups(train, p.group_size, "train")
    dev = [g for g in dev if g.negatives]
    if p.max_groups and len(train) > p.max_groups:
        rng = random.Random(p.seed)
        train = rng.sample(train, p.max_groups)
    return f"{ref.name}@{ref.version}", train, dev, dropped


# -- base models --------------------------------------------------------------------------------
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
    if archs and archs[0].endswith("ForSequenceClassification") and cfg.get("num_labels", len(cfg.get("id2label") or {0: 0})) == 1:
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
        raise InputError("base_model", f"{base.spec!r} is a cross-encoder; this method needs a bi-encoder or an encoder")
    try:
        return load_sentence_transformer(base.path, device)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad base model for the caller
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
    except Exception as exc:  # noqa: BLE001
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
    blocks = getattr(getattr(encoder, "encoder", None), "layer", None) or getattr(getattr(encoder, "transformer", None), "layer", None)
    if blocks is None:
        raise InputError("freeze_layers", "this architecture's layers are not recognised; use freeze_layers=0")
    if layers > len(blocks):
        raise InputError("freeze_layers", f"is {layers}; the model has {len(blocks)} layers")
    for p in getattr(encoder, "embeddings").parameters():
        p.requires_grad_(False)
    for block in list(blocks)[:layers]:
        for p in block.parameters():
            p.requires_grad_(False)
    return layers


# -- the training run ---------------------------------------------------------------------------
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


class _Monitor:
    """Progress, cancellation and early stopping as one ``TrainerCallback``; keeps the best
    dev weights in memory and restores them at the end."""

    def __init__(self, model, metric_key: str, patience: int, report: Progress, check: Callable[[], None]) -> None:
        from transformers import TrainerCallback

        monitor = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                check()
                monitor.step = state.global_step
                monitor.max_steps = state.max_steps
                report(state.global_step, state.max_steps, monitor.message())

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    monitor.loss = float(logs["loss"])
                    monitor.history.append({"step": state.global_step, "loss": monitor.loss})

            def on_evaluate(self, args, state, control, metrics=None, **kw):
                value = (metrics or {}).get(monitor.metric_key)
                if value is not None and monitor.observe(state.global_step, float(value)):
                    control.should_training_stop = True
                report(state.global_step, state.max_steps or None, monitor.message())

        self.callback = Callback()
        self.model = model
        self.metric_key = metric_key
        self.patience = patience
        self.step = 0
        self.max_steps = 0
        self.loss: float | None = None
        self.dev: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self.bad = 0
        self.history: list[dict[str, float]] = []

    def observe(self, step: int, value: float) -> bool:
        """Record a dev evaluation; keep the best weights; True when patience has run out."""
        self.dev = value
        self.history.append({"step": step, "dev": value})
        if self.best is None or value > self.best + 1e-9:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad += 1
        return bool(self.patience and self.bad >= self.patience)

    def message(self) -> str:
        parts = [f"step {self.step}/{self.max_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.dev is not None:
            parts.append(f"dev {self.metric_key.removeprefix('eval_dev_')} {self.dev:.4f}")
        return " ".join(parts)

    def restore_best(self) -> None:
        if self.best_state is not None and self.best_step != self.step:
            self.model.load_state_dict(self.best_state)


def _group_scorer_evaluator(score_groups: Callable[[Any], dict[str, float]], metric: str):
    """A sentence-transformers evaluator that ranks the dev groups with the model in training."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    class DevGroups(BaseEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.primary_metric = metric
            self.greater_is_better = True

        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            was_training = model.training
            model.eval()
            try:
                return score_groups(model)
            finally:
                model.train(was_training)

    return DevGroups()


def _is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _training_args(cls, p: FinetuneParams, method: str, out_dir: str, steps_per_epoch: int, has_dev: bool, **extra):
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
    if not torch.cuda.is_available() and (bf16 or _is_distributed()):
        kwargs["use_cpu"] = True  # bf16 on a CPU, and accelerate's MULTI_CPU DDP, need it said
    if _is_distributed() and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # CPU-only DDP
    return cls(**kwargs)


class Run:
    """One fine-tuning run: data, base model, method; ``train()`` returns a :class:`Trained`."""

    def __init__(self, p: FinetuneParams, settings: Settings, train: list[Group], dev: list[Group], base: Base, method: str,
                 report: Progress, check: Callable[[], None]) -> None:
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
    def _rows(self) -> list[tuple[str, list[str]]]:
        """(query, [positive, G-1 negatives]) per training group."""
        return [(g.query, [g.positive, *g.negatives[: self.G - 1]]) for g in self.train_groups]

    def _bank(self, prior, prior_path: str) -> Any:
        from adaptrank.training.evaluate import group_candidates
        from adaptrank.training.residual import PassageBank

        texts = [t for _, ts in self._rows() for t in ts] + [t for g in self.dev for t in group_candidates(g)[0]]
        bank = PassageBank(texts)
        from adaptrank.core.embeddings import passage_vectors

        cache = passage_vectors(prior_path)  # shared with generation's miner: adapt embeds a passage once
        self.report(0, None, f"embedding {len(bank)} passages with the prior")
        bank.embed(prior, progress=lambda d, t: self.report(d, t, f"embedding passages {d}/{t}"), check=self.check,
                   cache=cache)
        return bank

    def _fit(self, trainer, model) -> _Monitor:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # stdout belongs to the CLI's result and to MCP over stdio
        monitor = _Monitor(model, self.metric_key, self.p.patience, self.report, self.check)
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

    def _steps_per_epoch(self) -> int:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return max(1, math.ceil(len(self.train_groups) / (self.p.batch_size * self.p.grad_accumulation * world)))

    def _dev_rank(self, score_pairs) -> dict[str, float]:
        from adaptrank.training.evaluate import rank_groups

        m = rank_groups(score_pairs, self.dev)
        return {f"dev_{k}": v for k, v in m.items() if k != "groups"}

    def train(self, out_dir: str) -> Trained:
        return getattr(self, "_train_" + self.method.replace("-", "_"))(out_dir)

    # methods ----------------------------------------------------------------------------------
    def _train_query_encoder(self, out_dir: str) -> Trained:
        import numpy as np
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        from adaptrank.training.residual import FrozenPassageLCE

        prior = load_bi_encoder(self.base, self.settings.device)
        prior.eval()
        bank = self._bank(prior, self.base.path)
        emb = bank.embeddings
        query_model = load_bi_encoder(self.base, self.settings.device)
        query_model.max_seq_length = self.p.max_length or DEFAULT_MAX_LENGTH["query-encoder"]
        freeze_bottom(query_model[0].model, self.p.freeze_layers)
        rows = self._rows()
        ds = Dataset.from_dict({"query": [q for q, _ in rows], "label": [bank.ids(ts) for _, ts in rows]})
        tau = self.p.tau

        def score_groups(model) -> dict[str, float]:
            def score_pairs(pairs):
                qs = list(dict.fromkeys(q for q, _ in pairs))
                qe = model.encode(qs, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
                pos = {q: i for i, q in enumerate(qs)}
                return np.asarray([float(qe[pos[q]] @ emb[bank.index[d]]) / tau for q, d in pairs])

            return self._dev_rank(score_pairs)

        args = _training_args(SentenceTransformerTrainingArguments, self.p, "query-encoder", out_dir, self._steps_per_epoch(), bool(self.dev))
        trainer = SentenceTransformerTrainer(
            model=query_model,
            args=args,
            train_dataset=ds,
            loss=FrozenPassageLCE(query_model, emb, tau, in_batch=self.p.in_batch_negatives),
            evaluator=_group_scorer_evaluator(score_groups, f"dev_{self.p.metric}") if self.dev else None,
        )
        mon = self._fit(trainer, query_model)
        prior_spec = ZERO_SHOT if self.base.spec == ZERO_SHOT else "prior"

        def save(path: Path) -> None:
            query_model.save(str(path / "query_encoder"))
            if prior_spec != ZERO_SHOT:
                prior.save(str(path / "prior"))

        extra = {"residual": {"prior": prior_spec, "tau": tau, "query_encoder": "query_encoder", "cross_encoder": None}}
        return Trained("residual", save, extra, "lce (query tower vs frozen passages)", mon.step, mon.best_step, mon.history)

    def _train_residual(self, out_dir: str) -> Trained:
        return self._train_cross(out_dir, residual=True)

    def _train_cross_encoder(self, out_dir: str) -> Trained:
        return self._train_cross(out_dir, residual=False)

    def _train_cross(self, out_dir: str, residual: bool) -> Trained:
        import numpy as np
        import torch
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

        from adaptrank.training.lce import LCELoss
        from adaptrank.training.residual import zero_head

        max_length = self.p.max_length or min(DEFAULT_MAX_LENGTH["cross-encoder"], self.settings.max_length)
        base = self.base
        if base.spec == ZERO_SHOT:
            base = Base(ZERO_SHOT, default_encoder_path(), "encoder")
        ce = load_cross_encoder_for_training(base, self.settings.device, max_length, identity=residual)
        freeze_bottom(ce.model, self.p.freeze_layers)
        rows = self._rows()
        cols: dict[str, list] = {"query": [q for q, _ in rows], "positive": [ts[0] for _, ts in rows]}
        for j in range(1, self.G):
            cols[f"negative_{j}"] = [ts[j] for _, ts in rows]
        tau = self.p.tau
        prior_of: Callable[[list[tuple[str, str]]], np.ndarray] | None = None
        if residual:
            from adaptrank.core.engine.biencoder import load_sentence_transformer

            zero_head(ce)
            prior = load_sentence_transformer(default_encoder_path(), self.settings.device)
            prior.eval()
            bank = self._bank(prior, default_encoder_path())
            emb = bank.embeddings
            q_all = list(dict.fromkeys([q for q, _ in rows] + [g.query for g in self.dev]))
            qe = prior.encode(q_all, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            qpos = {q: i for i, q in enumerate(q_all)}
            cols["label"] = [[float(qe[qpos[q]] @ emb[bank.index[t]]) for t in ts] for q, ts in rows]

            def prior_of(pairs):  # noqa: F811
                return np.asarray([float(qe[qpos[q]] @ emb[bank.index[d]]) / tau for q, d in pairs])

        ds = Dataset.from_dict(cols)

        def score_groups(model) -> dict[str, float]:
            def score_pairs(pairs):
                with torch.inference_mode():
                    s = model.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity(), show_progress_bar=False, convert_to_numpy=True)
                s = np.asarray(s, dtype=np.float64).reshape(-1)
                return s + prior_of(pairs) if prior_of is not None else s

            return self._dev_rank(score_pairs)

        method = "residual" if residual else "cross-encoder"
        args = _training_args(
            CrossEncoderTrainingArguments, self.p, method, out_dir, self._steps_per_epoch(), bool(self.dev),
            # every parameter takes part in each step; searching for unused ones trips DDP's hooks here
            ddp_find_unused_parameters=False if _is_distributed() else None,
        )
        trainer = CrossEncoderTrainer(
            model=ce,
            args=args,
            train_dataset=ds,
            loss=LCELoss(ce, prior_weight=1.0 / tau if residual else 0.0),
            evaluator=_group_scorer_evaluator(score_groups, f"dev_{self.p.metric}") if self.dev else None,
        )
        mon = self._fit(trainer, ce)
        if residual:
            def save(path: Path) -> None:
                ce.save(str(path / "cross_encoder"))

            extra = {"residual": {"prior": ZERO_SHOT, "tau": tau, "query_encoder": None, "cross_encoder": "cross_encoder"}}
            return Trained("residual", save, extra, "lce (residual: cosine/tau prior + cross-encoder)", mon.step, mon.best_step, mon.history)

        def save_ce(path: Path) -> None:
            ce.save(str(path))

        return Trained("cross-encoder", save_ce, {}, "lce", mon.step, mon.best_step, mon.history)

    def _train_bi_encoder(self, out_dir: str) -> Trained:
        import numpy as np
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

        model = load_bi_encoder(self.base, self.settings.device)
        if self.p.max_length:
            model.max_seq_length = self.p.max_length
        freeze_bottom(model[0].model, self.p.freeze_layers)
        rows = self._rows()
        cols: dict[str, list] = {"query": [q for q, _ in rows], "positive": [ts[0] for _, ts in rows]}
        for j in range(1, self.G):
            cols[f"negative_{j}"] = [ts[j] for _, ts in rows]

        def score_groups(m) -> dict[str, float]:
            def score_pairs(pairs):
                texts = list(dict.fromkeys(t for pair in pairs for t in pair))
                e = m.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
                pos = {t: i for i, t in enumerate(texts)}
                return np.asarray([float(e[pos[q]] @ e[pos[d]]) for q, d in pairs])

            return self._dev_rank(score_pairs)

        from sentence_transformers.base.sampler import BatchSamplers

        args = _training_args(
            SentenceTransformerTrainingArguments, self.p, "bi-encoder", out_dir, self._steps_per_epoch(), bool(self.dev),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(cols),
            loss=losses.MultipleNegativesRankingLoss(model, scale=1.0 / self.p.tau),
            evaluator=_group_scorer_evaluator(score_groups, f"dev_{self.p.metric}") if self.dev else None,
        )
        mon = self._fit(trainer, model)

        def save(path: Path) -> None:
            model.save(str(path))

        return Trained("bi-encoder", save, {}, "multiple negatives ranking (in-batch + hard negatives)", mon.step, mon.best_step, mon.history)


# -- entry points -------------------------------------------------------------------------------
def finetune(
    params: FinetuneParams | dict[str, Any],
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    store: ModelStore | None = None,
) -> FinetuneResult:
    """Train, save a new version (atomically, with its card), and promote it if it wins on dev."""
    from adaptrank.training import promotion

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
        trained = run.train(out_dir)
    seconds["train"] = time.perf_counter() - t0
    check()
    result = FinetuneResult(
        name=name, method=method, base_model=base.spec, dataset=dataset, baseline=baseline,
        train_groups=len(train), dev_groups=len(dev), dropped_groups=dropped,
        steps=trained.steps, best_step=trained.best_step, rank=rank,
    )
    if rank != 0:  # DDP: rank 0 writes and promotes; the other ranks only trained
        result.seconds = {k: round(v, 2) for k, v in seconds.items()}
        return result

    # metrics before: the model this one must beat, on the same dev groups
    t0 = time.perf_counter()
    from adaptrank.core.engine import registry

    before: dict[str, float] = {}
    per_group: dict[str, Any] = {}  # "before"/"after": [groups, 2] arrays for the paired gate
    if dev:
        report(0, None, f"scoring the dev split with the baseline ({baseline})")
        before, per_group["before"] = _dev_metrics(_load_scorer(baseline, store, settings).score_pairs, dev)
    check()
    hyper = p.model_dump(exclude={"dataset", "output_name", "promote", "min_delta"})
    hyper.update(method=method, learning_rate=p.learning_rate or DEFAULT_LR[method],
                 max_length=p.max_length or DEFAULT_MAX_LENGTH[method], train_groups=len(train),
                 dev_groups=len(dev), dropped_groups=dropped, steps=trained.steps, best_step=trained.best_step)
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
                resolved = registry.Resolved(name, version, trained.backend, str(tmp), card={**card, "name": name, "version": version})
                card["metrics_after"], per_group["after"] = _dev_metrics(registry.load(resolved, settings).score_pairs, dev)
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
    decision = promotion.decide(
        p.metric, card.get("metrics_after", {}), before, baseline=baseline, force=p.promote, min_delta=p.min_delta,
        paired=(per_group["after"][:, column], per_group["before"][:, column]) if len(per_group) == 2 else None,
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


def _dev_metrics(score_pairs, dev: list[Group]) -> tuple[dict[str, float], Any]:
    """Mean dev metrics and the per-group ``[groups, 2]`` (MRR@10, nDCG@10) scores behind them."""
    from adaptrank.training.evaluate import group_scores

    per_group = group_scores(score_pairs, dev)
    return {"dev_mrr@10": float(per_group[:, 0].mean()), "dev_ndcg@10": float(per_group[:, 1].mean())}, per_group


def _load_scorer(spec: str, store: ModelStore, settings: Settings):
    from adaptrank.core.engine import registry

    return registry.load(registry.resolve(spec, store), settings)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    from transformers import set_seed

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_seed(seed)
