"""What the agent returns: passages with scores and provenance, and a timed trace of every stage.

Pydantic models, so the MCP ``search`` tool returns them as its structured output unchanged and
the CLI and LlamaIndex retriever read the same fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Provenance(BaseModel):
    """One retrieval that found a passage."""

    query_index: int = Field(description="index into SearchResult.queries (0 is the original question)")
    query: str
    rank: int = Field(description="1-based rank in that query's candidate list")
    score: float = Field(description="that retrieval's score (cosine similarity, or fused RRF score when hybrid)")
    round: int = Field(0, description="0 for the first round, 1 for the follow-up round")


class Passage(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    score: float = Field(
        description="the engine's score against the original question (rerank='original'), or the RRF "
        "fusion of the per-query engine rankings (rerank='fusion')"
    )
    rank: int = Field(description="1-based rank after reranking")
    found_by: list[Provenance] = Field(description="every (sub-)query that retrieved this passage")
    query_scores: list[float] | None = Field(
        None, description="rerank='fusion': the engine's score against each of SearchResult.queries"
    )


class Stage(BaseModel):
    name: str
    seconds: float
    detail: dict[str, Any] = Field(default_factory=dict)


class Trace(BaseModel):
    stages: list[Stage] = Field(default_factory=list)
    total_seconds: float = 0.0

    def seconds(self, name: str) -> float:
        return sum(s.seconds for s in self.stages if s.name == name)


class Answer(BaseModel):
    text: str
    citations: list[str] = Field(description="ids of the passages the answer cites")
    valid: bool = Field(True, description="False when the LLM's answer did not parse (text is its raw output)")


class SearchResult(BaseModel):
    question: str
    collection: str | None = None
    queries: list[str] = Field(description="what was retrieved with: the original question, then sub-questions")
    cleaned_question: str | None = Field(
        None,
        description="the question after greetings, thanks, sign-offs and narration were removed "
        "(None when cleaning changed nothing); retrieval and reranking use it",
    )
    decomposition: str = Field(
        description="'single' (one intent: searched as one cleaned query), 'llm' or 'rule' (several asks, split "
        "by the LLM or by rules; 'rule' also when the LLM's answer was invalid), 'caller' (sub-questions given) "
        "or 'off'"
    )
    decomposition_error: str | None = None
    pool_size: int = Field(description="distinct passages reranked")
    model: str
    model_version: str
    results: list[Passage]
    answer: Answer | None = None
    trace: Trace
