"""``GenerateParams``: everything a generation run depends on, validated once."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from adaptrank.core.prompts import QUERYGEN_TYPED, get_template
from adaptrank.training.params import (
    ConsistencyDepth,
    Judge,
    MaxDocuments,
    MaxMinutes,
    Negatives,
    QueriesPerDocument,
    QueryLog,
    QuestionTypes,
    check_name,
)

#: fields added after checkpoints were first written: left out of the fingerprint at their default
ADDED_FIELDS = ("specific_ranked",)
#: fields that only matter with a query log: left out of the fingerprint of a run without one
LOG_FIELDS = ("log_examples", "log_min_margin", "log_train")


class GenerateParams(BaseModel):
    """Everything a generation run depends on (stored with the job and in the card)."""

    source: Literal["chroma", "beir", "folder"] = Field(description="where the documents come from")
    collection: str | None = Field(None, validate_default=True, description="Chroma collection (source='chroma')")
    path: str | None = Field(
        None, validate_default=True, description="BEIR folder / corpus.jsonl, or a folder of .txt/.md"
    )
    output_name: str = Field(description="dataset name under ADAPTRANK_HOME/datasets")
    max_documents: MaxDocuments = 200
    queries_per_document: QueriesPerDocument = 2
    negatives: Negatives = 7
    mining_depth: int = Field(30, ge=1, le=1000, description="candidates mined per query")
    judge: Judge = True
    judge_depth: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="candidates judged per query (default: negatives; the judge is the costly step)",
    )
    judge_threshold: float | None = Field(None, ge=0.0, le=1.0, description="p(yes) cut-off instead of the label")
    judge_method: Literal["auto", "choice", "likelihood"] = Field(
        "auto", description="choice: yes/no; likelihood: query likelihood vs the own passage; auto: by model"
    )
    judge_margin: float = Field(
        0.3,
        ge=-5.0,
        le=5.0,
        description="likelihood judge: how much more likely (nats/token) the query must be given a candidate "
        "than given its own passage for the candidate to count as relevant (negative: slack)",
    )
    llm_backend: str | None = None
    llm_model: str | None = None
    judge_backend: str | None = Field(None, description="default: the same LLM as generation")
    judge_model: str | None = None
    queries: QueryLog = None
    max_log_queries: int = Field(2000, ge=1, le=100_000, description="use at most this many log queries")
    log_min_margin: float = Field(
        1.5,
        ge=0.0,
        le=10.0,
        description="keep a log query only when the teacher's best candidate beats the runner-up by this much "
        "(z units): below it the label is too often wrong (docs/generation.md)",
    )
    log_train: bool = Field(
        False,
        description="with a query log: train on its labelled queries too. Off by default: the teacher's labels "
        "are wrong too often, and on conditions the log does not cover they cost more than they add "
        "(docs/finetuning.md); the labelled log goes to the dev split, where the promotion gate reads it",
    )
    log_examples: bool = Field(
        False,
        description="with a query log: show a few of its queries to the LLM as examples of how this team asks. "
        "Off by default: a small LLM copies their shapes, and its queries become generic and easy (docs/generation.md)",
    )
    template: str = QUERYGEN_TYPED.name
    question_types: QuestionTypes = "general"
    dense: Literal["auto", "on", "off"] = "auto"
    grounding: bool = Field(True, description="drop queries whose corpus-rare words are not from the passage")
    specific: bool = Field(
        True,
        description="drop queries that its passage's siblings (same title or document) answer as well: "
        "questions about the subject rather than about the passage",
    )
    corpus_questions: bool = Field(
        True,
        description="also use the questions the documents ask themselves: a passage that opens with a question "
        "gives that question as its query (training/headings.py; no LLM call)",
    )
    specific_ranked: bool = Field(
        False,
        description="with specific: also drop a query when a sibling is more about its aspect words than its "
        "own passage (BM25 of those words), not only when a sibling shares more of them",
    )
    consistency_depth: ConsistencyDepth = None
    chunk_tokens: int | None = Field(None, ge=16, le=8192, description="default: the reranker's passage budget")
    max_minutes: MaxMinutes = 0
    batch_documents: int = Field(16, ge=1, le=1024, description="documents per LLM batch (and checkpoint)")
    dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") == "chroma" and not value:
            raise ValueError("is required when source is 'chroma'")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None, info: ValidationInfo) -> str | None:
        source = info.data.get("source")
        if source in ("beir", "folder") and not value:
            raise ValueError(f"is required when source is {source!r}")
        return value

    @field_validator("output_name")
    @classmethod
    def _output_name(cls, value: str) -> str:
        return check_name(value, "output_name")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        get_template(value)  # an unknown template: NotFoundError, naming the known ones
        return value

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be reused."""
        data = self.model_dump(exclude={"batch_documents", "max_minutes"})  # how much gets done, not how
        if data.get("queries") is None:
            for key in LOG_FIELDS:  # older checkpoints without a log stay valid
                data.pop(key)
        for key in ADDED_FIELDS:  # at its default, a field added later leaves older checkpoints valid
            if data.get(key) == type(self).model_fields[key].default:
                data.pop(key)
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
