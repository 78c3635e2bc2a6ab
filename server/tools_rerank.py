"""MCP tools ``rerank`` and ``list_models``, and the models as resources.

The signatures are the schema: the request limits from the settings (query length, number of
documents, ``top_n``) are written into the JSON schema the client sees, so an agent knows them
before it calls, and a call that breaks one is refused with pydantic's message naming the field
and the limit. The engine checks the rest (a blank query, an oversized document, an unknown
model) and its ``InputError``/``NotFoundError`` become tool errors (:mod:`.errors`).

No ``from __future__ import annotations`` here: the annotated types are built per app from its
settings, and fastmcp must see them as objects, not strings.
"""

import json
from typing import Annotated, Any

from fastmcp import FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from adaptrank.core.errors import NotFoundError
from adaptrank.core.results import Document, RerankResponse
from adaptrank.server.context import Services
from adaptrank.server.errors import resource_errors, tool_errors

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


class ModelList(BaseModel):
    default_model: str = Field(description="the model a request that names none is scored with")
    models: list[dict[str, Any]] = Field(
        description="zero-shot plus every model-store version: name, version, backend, active, loaded, card"
    )


def model_list(services: Services) -> ModelList:
    return ModelList(
        default_model=services.reranker.default_model,
        models=[m.model_dump(mode="json") for m in services.reranker.models()],
    )


def model_card(services: Services, name: str) -> dict[str, Any]:
    """The active version's card of a store model (with its versions), or the zero-shot default."""
    for info in services.reranker.models():
        if info.name == name and (info.active or info.name == "zero-shot"):
            break
    else:
        known = sorted({m.name for m in services.reranker.models()})
        raise NotFoundError("model", f"unknown model {name!r}; known: {known}")
    data = info.model_dump(mode="json")
    if name != "zero-shot":
        data["versions"] = services.store.versions(name)
    return data


def register(mcp: FastMCP, services: Services) -> None:
    s = services.settings
    Query = Annotated[
        str,
        Field(
            min_length=1,
            max_length=s.max_query_chars,
            description=f"the search query or question (1-{s.max_query_chars} characters)",
        ),
    ]
    Documents = Annotated[
        list[str | Document],
        Field(
            min_length=1,
            max_length=s.max_documents,
            description=(
                f"1-{s.max_documents} passages to rank: plain strings or {{id, text, metadata}} objects; "
                f"each text at most {s.max_document_chars} characters, {s.max_total_chars} in all"
            ),
        ),
    ]
    TopN = Annotated[
        int | None,
        Field(ge=1, le=s.max_documents, description="return only the best N results (default: all)"),
    ]
    Model = Annotated[
        str | None,
        Field(
            description="a model-store name (optionally name@version), 'zero-shot', or a model folder inside "
            "the server's allowed roots; default: the server's default model (see list_models)"
        ),
    ]
    ReturnDocuments = Annotated[bool, Field(description="include each document in its result")]

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def rerank(
        query: Query,
        documents: Documents,
        top_n: TopN = None,
        model: Model = None,
        return_documents: ReturnDocuments = False,
    ) -> RerankResponse:
        """Rank passages by relevance to a query with the server's cross-encoder.

        Results come sorted by score (highest first). Each result's `index` is the position of the
        document in *your* `documents` list, and `id` echoes the id you sent, so a score can never
        be attached to the wrong passage. The response names the model and the version that scored.
        """
        return await services.reranker.arerank(
            query, documents, top_n=top_n, model=model, return_documents=return_documents
        )

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    def list_models() -> ModelList:
        """List the models this server can rerank with: the zero-shot default and every model-store
        version (which one is active, which are loaded, their cards with metrics)."""
        return model_list(services)

    @mcp.resource("adaptrank://models", mime_type="application/json")
    @resource_errors
    def models_resource() -> str:
        """All models (as the list_models tool returns them)."""
        return model_list(services).model_dump_json(indent=2)

    @mcp.resource("adaptrank://models/{name}", mime_type="application/json")
    @resource_errors
    def model_card_resource(name: str) -> str:
        """One model's card: backend, active version, versions, training data, metrics."""
        return json.dumps(model_card(services, name), indent=2)
