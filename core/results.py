"""The one result type: the MCP tool, the HTTP route and the Python API all return these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Document(BaseModel):
    """A passage to rerank. Callers may send plain strings; they become ``Document(text=...)``."""

    id: str | None = None
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class RerankResult(BaseModel):
    index: int = Field(description="position of the document in the caller's list")
    id: str | None = Field(None, description="the caller's document id, when it sent one")
    score: float
    document: Document | None = None


class RerankResponse(BaseModel):
    model: str
    version: str
    results: list[RerankResult]
