"""``GenerateParams``: everything a generation run depends on, validated once."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from adaptrank.core.errors import InputError
from adaptrank.core.modelstore import validate_name
from adaptrank.core.prompts import QUERYGEN_TYPED, TYPE_SETS, get_template


class GenerateParams(BaseModel):
    """Everything a generation run depends on (stored with the job and in the card)."""

    source: Literal["chroma", "beir", "folder"] = Field(description="where the documents come from")
    collection: str | None = Field(None, description="Chroma collection (source='chroma')")
    path: str | None = Field(None, description="BEIR folder / corpus.jsonl, or a folder of .txt/.md")
    output_name: str = Field(description="dataset name under ADAPTRANK_HOME/datasets")
    max_documents: int = Field(200, ge=1, le=1_000_000, description="documents sampled from the source")
    queries_per_document: int = Field(2, ge=1, le=20)
    negatives: int = Field(7, ge=0, le=100, description="hard negatives per group")
    mining_depth: int = Field(30, ge=1, le=1000, description="candidates mined per query")
    judge: bool = Field(True, description="LLM-judge the mined candidates (off: top mined are negatives)")
    judge_depth: int | None = Field(None, ge=0, le=1000, description="candidates judged per query (default: negatives; the judge is the costly step)")
    judge_threshold: float | None = Field(None, ge=0.0, le=1.0, description="p(yes) cut-off instead of the label")
    judge_method: Literal["auto", "choice", "likelihood"] = Field(
        "auto", description="choice: yes/no; likelihood: query likelihood vs the own passage; auto: by model"
    )
    judge_margin: float = Field(
        0.3, ge=-5.0, le=5.0,
        description="likelihood judge: how much more likely (nats/token) the query must be given a candidate "
        "than given its own passage for the candidate to count as relevant (negative: slack)",
    )
    llm_backend: str | None = None
    llm_model: str | None = None
    judge_backend: str | None = Field(None, description="default: the same LLM as generation")
    judge_model: str | None = None
    queries: str | None = Field(
        None,
        description="a query log: real, unlabelled queries (.txt, one per line, or .jsonl with 'text'); each is "
        "mined and labelled by a teacher (zero-shot cosine + LLM likelihood) into a training group of its own, "
        "and a few labelled ones become the generation prompt's style examples",
    )
    max_log_queries: int = Field(2000, ge=1, le=100_000, description="use at most this many log queries")
    template: str = QUERYGEN_TYPED.name
    question_types: str = Field("general", description=f"one of {sorted(TYPE_SETS)}")
    dense: Literal["auto", "on", "off"] = "auto"
    grounding: bool = Field(True, description="drop queries whose corpus-rare words are not from the passage")
    specific: bool = Field(
        True, description="drop queries that its passage's siblings (same title or document) answer as well: "
        "questions about the subject rather than about the passage",
    )
    consistency_depth: int | None = Field(
        None, ge=1, le=1000,
        description="round-trip filter (Promptagator): keep a query only if BM25 or dense retrieval ranks "
        "its own document within this depth (None: keep all)",
    )
    chunk_tokens: int | None = Field(None, ge=16, le=8192, description="default: the reranker's passage budget")
    batch_documents: int = Field(16, ge=1, le=1024, description="documents per LLM batch (and checkpoint)")
    dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        validate_name(self.output_name, "output_name")
        if self.source == "chroma" and not self.collection:
            raise InputError("collection", "is required when source is 'chroma'")
        if self.source in ("beir", "folder") and not self.path:
            raise InputError("path", f"is required when source is {self.source!r}")
        if self.question_types not in TYPE_SETS:
            raise InputError("question_types", f"{self.question_types!r} is not one of {sorted(TYPE_SETS)}")
        get_template(self.template)
        return self

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be reused."""
        data = self.model_dump(exclude={"batch_documents"})
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
