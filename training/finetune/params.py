"""What a fine-tuning run depends on (``FinetuneParams``), what it returns (``FinetuneResult``) and
the per-method defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from adaptrank.core.modelstore import validate_name
from adaptrank.training.params import (
    DEFAULT_INTERPOLATION,
    BaseModelSpec,
    Epochs,
    GroupSize,
    Interpolation,
    LearningRate,
    Method,
    Promote,
    check_name,
    parse,
)

#: what ``method="auto"`` picks when the base is not a pretrained cross-encoder (see docs/finetuning.md)
DEFAULT_METHOD = "query-encoder"

#: per-method defaults where the caller gives none (query-encoder 5e-5: docs/finetuning.md, the "Levers" table)
DEFAULT_LR = {"query-encoder": 5e-5, "residual": 3e-5, "cross-encoder": 3e-5, "bi-encoder": 2e-5}
DEFAULT_MAX_LENGTH = {"query-encoder": 64, "residual": 256, "cross-encoder": 256, "bi-encoder": 256}


class FinetuneParams(BaseModel):
    """Everything a fine-tuning run depends on (stored in the job and in the model card)."""

    dataset: str = Field(description="dataset name, or name@version (default: its latest version)")
    output_name: str | None = Field(None, description="model-store name (default: '<dataset>-reranker')")
    method: Method = "auto"
    base_model: BaseModelSpec = None
    epochs: Epochs = 2.0
    group_size: GroupSize = 8
    learning_rate: LearningRate = None
    batch_size: int = Field(16, ge=1, le=4096, description="groups per step and device")
    grad_accumulation: int = Field(1, ge=1, le=1024)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    max_length: int | None = Field(
        None, ge=8, le=8192, description="tokens: query tokens (query-encoder) or pair tokens (cross-encoders)"
    )
    tau: float = Field(0.05, gt=0, le=1, description="temperature of the residual prior (cosine / tau)")
    freeze_layers: int = Field(0, ge=0, le=128, description="bottom encoder layers (and embeddings) kept frozen")
    interpolation: Interpolation = DEFAULT_INTERPOLATION
    in_batch_negatives: bool = Field(
        False, description="query-encoder: other queries' passages in the batch as extra negatives"
    )
    eval_every: int | None = Field(None, ge=1, description="steps between dev evaluations (default: 4 per epoch)")
    # Default 0: the generated dev split is small and noisy, and early stopping gained nothing on it
    # (docs/finetuning.md, the "Levers" table). The best dev checkpoint is kept either way.
    patience: int = Field(
        0,
        ge=0,
        le=1000,
        description="evaluations without a dev gain before stopping (0: never; the best dev checkpoint is kept)",
    )
    max_groups: int | None = Field(None, ge=1, description="use at most this many training groups")
    metric: Literal["mrr@10", "ndcg@10"] = "mrr@10"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training arithmetic: auto = bf16 autocast where the GPU or CPU computes bf16 natively"
    )
    promote: Promote = None
    min_delta: float = Field(0.0, ge=0, le=1, description="dev gain required to promote")
    seed: int = 0

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        name, _, version = value.partition("@")
        check_name(name, "dataset")
        if version:
            try:
                check_name(version, "dataset version")
            except ValueError as exc:
                raise ValueError(f"version {exc}") from None
        return value

    @field_validator("output_name")
    @classmethod
    def _output_name(cls, value: str | None) -> str | None:
        return value if value is None else check_name(value, "output_name")

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
    return parse(FinetuneParams, raw)
