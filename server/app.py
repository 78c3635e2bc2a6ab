"""The FastMCP app: ``create_app()`` builds the server every transport runs.

Each part registers its tools, resources and routes from its own module through a
``register(mcp, services)`` function; this file only calls them (see ``_register_parts``).
Tools of every part share one :class:`~adaptrank.server.context.Services` (settings, model store,
the one ``Reranker``...), built once per app.
"""

from __future__ import annotations

from fastmcp import FastMCP

from adaptrank.core import __version__
from adaptrank.core.settings import Settings
from adaptrank.server import health, http, metrics, tools_finetune, tools_rerank, tools_search, tools_training
from adaptrank.server.context import Services
from adaptrank.server.errors import ReadableValidationErrors
from adaptrank.server.metrics import ToolMetrics

INSTRUCTIONS = """\
adaptrank reranks candidate passages for retrieval-augmented generation with a cross-encoder.
Call `rerank` with your query and the passages your retriever found (strings or {id, text} objects);
use each result's `index` (its position in your list) to pick the passages, best first.
`list_models` (or the adaptrank://models resource) shows the models and which one is active."""


def _register_parts(mcp: FastMCP, services: Services) -> None:
    """One line per part: each module's ``register(mcp, services)`` adds its tools/resources/routes."""
    tools_rerank.register(mcp, services)  # rerank, list_models, adaptrank://models resources
    http.register(mcp, services)  # POST /v1/rerank (Cohere-compatible), GET /healthz
    tools_search.register(mcp, services)  # search, ingest_documents, list_collections
    tools_training.register(
        mcp, services
    )  # generate_training_data, job_status, list_jobs, cancel_job, resume_job, list_datasets
    tools_finetune.register(mcp, services)  # finetune_reranker, evaluate_reranker
    metrics.register(mcp, services)  # GET /metrics
    health.register(mcp, services)  # GET /readyz


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastMCP:
    """Build the MCP server. Pass ``services`` to share (or fake) its members; else they are
    built lazily from ``settings`` (default: the ``ADAPTRANK_*`` environment)."""
    if services is None:
        services = Services(settings)
    elif settings is not None and settings is not services.settings:
        raise ValueError("pass either settings or services (whose settings are used), not both")
    auth = None
    if services.settings.token:
        from adaptrank.server.auth import StaticBearerToken

        auth = StaticBearerToken(services.settings.token)
    mcp = FastMCP(
        "adaptrank",
        instructions=INSTRUCTIONS,
        version=__version__,
        auth=auth,
        # Unexpected exceptions reach the client as "Error calling tool 'x'"; deliberate errors
        # (bad input, unknown model) are ToolErrors with their full message (see errors.py).
        mask_error_details=True,
        middleware=[ToolMetrics(services.metrics), ReadableValidationErrors()],
    )
    mcp.services = services  # type: ignore[attr-defined]  # for transports, tests and the CLI
    _register_parts(mcp, services)
    return mcp
