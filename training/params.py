"""Each training parameter declared once: its type, its limits and its description.

The pydantic params models (``GenerateParams``, ``FinetuneParams``, ``EvaluateParams``,
``AdaptParams``), the MCP tool signatures (``server/tools_*.py``, whose JSON schema the caller sees)
and the CLI flags (``server/cli_*.py``, whose help comes from :func:`help_of`) all use these types,
so a limit changes in one place. They live in training, not core: they describe training
operations, and the server, which shows them, already depends on training.

:func:`parse` validates a model from raw arguments and turns pydantic's error into an
``InputError`` naming the field (core's :func:`~adaptrank.core.errors.input_error`); validators
raise ``ValueError`` (or :func:`field_error` for a check across fields) and never ``InputError``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from adaptrank.core.errors import InputError, input_error
from adaptrank.core.modelstore import validate_name
from adaptrank.core.prompts import TYPE_SETS

M = TypeVar("M", bound=BaseModel)

# -- generation -------------------------------------------------------------------------------------
MaxDocuments = Annotated[int, Field(ge=1, le=100_000, description="documents sampled from the source")]
QueriesPerDocument = Annotated[int, Field(ge=1, le=10, description="synthetic queries per document")]
Negatives = Annotated[int, Field(ge=1, le=50, description="hard negatives per query")]
MaxMinutes = Annotated[
    float,
    Field(
        ge=0,
        le=10_080,
        description="wall-time budget in minutes: no new batch of documents starts once the next one would "
        "end past it, and the dataset keeps the documents done (0: no budget, all max_documents)",
    ),
]
Judge = Annotated[
    bool,
    Field(description="let the LLM judge mined candidates (relevant ones become extra positives, never negatives)"),
]
#: the question-type sets of the query-generation prompts (core.prompts.TYPE_SETS)
QuestionTypes = Annotated[Literal[tuple(TYPE_SETS)], Field(description="the kinds of questions to write")]  # type: ignore[valid-type]
ConsistencyDepth = Annotated[
    int | None,
    Field(
        ge=1,
        le=1000,
        description="round-trip filter: keep a query only if retrieval ranks its own document "
        "within this depth (null: keep all)",
    ),
]
QueryLog = Annotated[
    str | None,
    Field(
        description="a query log: real, unlabelled queries (.txt, one per line, or .jsonl with 'text'); "
        "labelled by mining and the LLM, they become dev queries the promotion gate checks "
        "(and, with log_train, training queries)"
    ),
]

# -- fine-tuning ------------------------------------------------------------------------------------
Method = Annotated[
    Literal["auto", "query-encoder", "residual", "cross-encoder", "bi-encoder"],
    Field(description="auto: cross-encoder LCE for a pretrained cross-encoder base, else the residual query-encoder"),
]
BaseModelSpec = Annotated[
    str | None,
    Field(
        max_length=512,
        description="start from: 'zero-shot', a model-store name, a local model folder or an HF "
        "id (default: the offline MiniLM)",
    ),
]
Epochs = Annotated[float, Field(gt=0, le=50, description="passes over the training groups")]
GroupSize = Annotated[int, Field(ge=2, le=64, description="1 positive + G-1 hard negatives per group")]
LearningRate = Annotated[float | None, Field(gt=0, le=0.1, description="peak learning rate (default: per method)")]
#: the query-encoder's default weight-space mix (docs/finetuning.md: chosen on GHR's dev half)
DEFAULT_INTERPOLATION = 1.0
Interpolation = Annotated[
    float,
    Field(
        ge=0,
        le=1,
        description="query-encoder: weight-space mix of the trained query tower with the base one (WiSE-FT); "
        "1 = the trained tower only, 0 = the base",
    ),
]
Promote = Annotated[
    bool | None,
    Field(description="null: activate only if it beats the active model on the dev split; true: force; false: never"),
]

# -- evaluation -------------------------------------------------------------------------------------
Models = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=512)]],
    Field(min_length=1, max_length=8, description="models to compare (zero-shot, store names, name@version)"),
]
FirstStage = Annotated[
    str,
    Field(pattern=r"^(bm25|chroma:[A-Za-z0-9._-]+)$", description="bm25, or chroma:<collection> for dense retrieval"),
]
Depth = Annotated[int, Field(ge=1, le=1000, description="first-stage candidates reranked per query")]
MaxQueries = Annotated[int | None, Field(ge=1, le=100_000, description="evaluate a sample of the queries")]


def help_of(field_type: Any) -> str:
    """The description of an ``Annotated[..., Field(description=...)]`` type: a CLI flag's help."""
    for meta in getattr(field_type, "__metadata__", ()):
        if getattr(meta, "description", None):
            return meta.description
    return ""


def parse(model: type[M], raw: dict[str, Any]) -> M:
    """``model`` validated from ``raw``; a bad value is an ``InputError`` naming the field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise input_error(exc) from None


def field_error(model: type[BaseModel] | str, field: str, message: str, value: Any = None) -> ValidationError:
    """For a model validator that checks several fields: an error pydantic reports under ``field``
    (a plain ``ValueError`` there would have no field)."""
    title = model if isinstance(model, str) else model.__name__
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=(field,), input=value
            )
        ],
    )


def check_name(value: str, field: str) -> str:
    """A model-store or dataset name, for a field validator (``ValueError``, not ``InputError``)."""
    try:
        return validate_name(value, field)
    except InputError as exc:
        raise ValueError(exc.message) from None
