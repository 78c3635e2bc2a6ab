"""MCP tools ``search`` (the decomposition agent over a Chroma collection), ``ingest_documents``
and ``list_collections``; the collections also as the resource ``adaptrank://collections``.

``search`` decomposes the question (by rules, by the server's LLM with ``llm=true``/``"server"``, by the
calling client's own LLM over MCP sampling with ``llm="sampling"``, or takes the caller's own
``sub_questions``), retrieves candidates per sub-question, merges them and reranks the pool
against the whole question. Each result says which queries found it, and the trace times every
stage. ``ingest_documents`` reads only inside the allowed roots (``ADAPTRANK_ALLOWED_ROOTS`` and
``ADAPTRANK_HOME``) and reports progress as it embeds.

No ``from __future__ import annotations``: fastmcp must see the annotated types as objects.
"""

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from adaptrank.agents.agent import AgentConfig, DecompositionAgent
from adaptrank.agents.results import Answer, SearchResult
from adaptrank.agents.retrieval import ChromaRetriever
from adaptrank.core.ingest import IngestReport, check_chunking, ingest
from adaptrank.core.llm.sampling import SamplingLLM, sampling_unavailable_reason
from adaptrank.core.paths import allowed_roots, check_allowed_path
from adaptrank.server.context import Services
from adaptrank.server.errors import resource_errors, tool_errors
from adaptrank.server.jobs import JobInfo

log = logging.getLogger(__name__)

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

CollectionName = Annotated[
    str,
    Field(
        min_length=3,
        max_length=512,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$",
        description="Chroma collection name (see list_collections)",
    ),
]


class CollectionInfo(BaseModel):
    name: str
    count: int = Field(description="passages (chunks) stored")


class CollectionList(BaseModel):
    location: str = Field(description="the Chroma directory or server URL")
    collections: list[CollectionInfo]


class IngestOutcome(BaseModel):
    """``report`` when the ingest ran inline; ``job`` (poll ``job_status``) when ``background``."""

    report: IngestReport | None = None
    job: JobInfo | None = None


def collection_list(services: Services) -> CollectionList:
    store = services.docstore
    return CollectionList(
        location=store.location,
        collections=[CollectionInfo(name=n, count=store.count(n)) for n in store.list_collections()],
    )


def agent_llm(services: Services) -> Any:
    """The server's LLM: the services' own member when they have one, else the settings' backend
    through the LLM factory (cached per process; the embedded SmolLM2 by default)."""
    if hasattr(type(services), "llm"):
        return services.llm  # type: ignore[attr-defined]
    from adaptrank.agents.llm import load_llm

    return load_llm(services.settings)


LLMChoice = bool | Literal["server", "sampling"]


def llm_mode(llm: Any) -> Literal["rules", "server", "sampling"]:
    """``search``'s ``llm`` argument: ``False`` -> rules, ``True``/``"server"`` -> the server's LLM,
    ``"sampling"`` -> the calling MCP client's LLM."""
    if llm is False or llm is None:
        return "rules"
    if llm is True or llm == "server":
        return "server"
    if llm == "sampling":
        return "sampling"
    raise ValueError(f"llm: expected false, true, 'server' or 'sampling', got {llm!r}")


async def run_search(
    services: Services,
    question: str,
    collection: str,
    *,
    top_n: int = 10,
    decompose: bool = True,
    k: int = 20,
    sub_questions: list[str] | None = None,
    hybrid: bool = False,
    follow_up: bool = False,
    answer: bool = False,
    model: str | None = None,
    rerank: str = "fusion",
    llm: LLMChoice = False,
    clean: bool = True,
    ctx: Context | None = None,
) -> SearchResult:
    """The ``search`` tool's work.

    ``llm``: see :func:`llm_mode`. One LLM serves the whole request (decomposition, follow-up
    queries, the answer). ``"sampling"`` needs ``ctx``, the MCP request of a client that can sample;
    when it cannot, the search still runs with rules (and no answer), and the result's
    ``decomposition_error``, the trace's ``decompose`` stage (``llm_error``) and the answer say why.
    """
    mode = llm_mode(llm)
    if mode == "sampling" and ctx is None:
        raise ValueError(
            "llm: 'sampling' asks the calling MCP client's LLM, so it needs the tool's MCP request "
            "context (ctx); outside MCP (the CLI, the library) use false or 'server'"
        )
    retriever = await asyncio.to_thread(
        ChromaRetriever.for_reranker, services.docstore, collection, services.reranker, model, hybrid=hybrid
    )
    the_llm: Any = None
    unavailable: str | None = None
    if (mode != "rules" and decompose) or answer:
        if mode == "sampling":
            unavailable = sampling_unavailable_reason(ctx)
            if unavailable is None:
                the_llm = SamplingLLM(ctx)  # on the event loop, inside the open tool request
            else:
                log.info("search(llm='sampling'): %s; rules instead", unavailable)
        else:
            the_llm = await asyncio.to_thread(agent_llm, services)
    # llm=false with answer=true: the LLM writes the answer only; the rules decompose
    agent = DecompositionAgent(services.reranker, the_llm, AgentConfig(decompose_with_llm=mode != "rules", clean=clean))
    result = await agent.arun(
        question,
        retriever,
        decompose=decompose,
        sub_questions=sub_questions,
        collection=collection,
        top_n=top_n,
        k=k,
        follow_up=follow_up,
        answer=answer,
        model=model,
        rerank=rerank,
    )
    stage = next((st for st in result.trace.stages if st.name == "decompose"), None)
    if stage is not None and the_llm is not None and result.decomposition in ("llm", "rule", "single"):
        stage.detail.setdefault("llm", getattr(the_llm, "name", type(the_llm).__name__))
    if unavailable is not None:
        if stage is not None:
            stage.detail["llm"] = "sampling (unavailable)"
            stage.detail["llm_error"] = unavailable
        if result.decomposition in ("rule", "single") and result.decomposition_error is None:
            result.decomposition_error = f"{unavailable}; decomposed by rules"
        if answer and result.results and result.answer is None:
            result.answer = Answer(text=f"(no answer: {unavailable})", citations=[], valid=False)
    return result


def register(mcp: FastMCP, services: Services) -> None:
    s = services.settings
    Question = Annotated[
        str,
        Field(
            min_length=1,
            max_length=s.max_query_chars,
            description=f"the question, possibly compound (1-{s.max_query_chars} characters)",
        ),
    ]
    TopN = Annotated[int, Field(ge=1, le=100, description="passages to return (1-100)")]
    K = Annotated[int, Field(ge=1, le=200, description="candidates retrieved per query (1-200)")]
    SubQuestions = Annotated[
        list[Annotated[str, Field(min_length=1, max_length=s.max_query_chars)]] | None,
        Field(max_length=10, description="your own decomposition (up to 10 sub-questions); skips the server's"),
    ]

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def search(
        question: Question,
        collection: CollectionName,
        top_n: TopN = 10,
        decompose: Annotated[
            bool,
            Field(
                description="split a question that asks several things into sub-questions "
                "(a single ask is searched as one query either way)"
            ),
        ] = True,
        k: K = 20,
        sub_questions: SubQuestions = None,
        hybrid: Annotated[bool, Field(description="fuse dense retrieval with BM25 (reciprocal-rank fusion)")] = False,
        follow_up: Annotated[
            bool, Field(description="one more retrieval round for sub-questions the top missed")
        ] = False,
        llm: Annotated[
            LLMChoice,
            Field(
                description=(
                    "who decomposes the question: false = rules (they split conjunctions like 'What causes X, and how is "
                    "Y treated?'); true or 'server' = the server's LLM (slower); 'sampling' = YOUR model, through MCP "
                    "sampling, if your client supports it (else rules, with the reason in decomposition_error). The "
                    "answer, when asked for, comes from the same LLM"
                )
            ),
        ] = False,
        answer: Annotated[
            bool,
            Field(
                description="also write a short answer with citations (uses the LLM chosen by "
                "`llm`: the server's unless llm='sampling')"
            ),
        ] = False,
        model: Annotated[
            str | None, Field(description="reranker model (default: the server's; see list_models)")
        ] = None,
        rerank: Annotated[
            Literal["original", "fusion"],
            Field(
                description="'original': rank by relevance to the whole question; 'fusion': also score against "
                "each sub-question and fuse the rankings, so every part of the question is covered"
            ),
        ] = "fusion",
        clean: Annotated[
            bool,
            Field(
                description="drop greetings, thanks, sign-offs, subject lines and narration "
                "from the message before searching (the result's cleaned_question)"
            ),
        ] = True,
        ctx: Context | None = None,
    ) -> SearchResult:
        """Search a document collection for a question or a message as people write it.

        The message is cleaned of chatter (greetings, thanks, sign-offs); one that asks several things is
        split into self-contained sub-questions (by rules, by the server's LLM, or by your own model
        through MCP sampling with `llm="sampling"`; or pass your own `sub_questions`), each retrieves `k`
        candidates from Chroma, the candidates are merged and reranked against the cleaned question.
        `decomposition` says what happened ('single' for one ask). Results: passages best first with
        `score`, metadata and `found_by` (which queries retrieved each, at which rank); `trace` times every
        stage.
        """
        return await run_search(
            services,
            question,
            collection,
            top_n=top_n,
            decompose=decompose,
            k=k,
            sub_questions=sub_questions,
            hybrid=hybrid,
            follow_up=follow_up,
            answer=answer,
            model=model,
            rerank=rerank,
            llm=llm,
            clean=clean,
            ctx=ctx,
        )

    @mcp.tool(annotations=WRITES)
    @tool_errors
    async def ingest_documents(
        path: Annotated[
            str,
            Field(
                min_length=1,
                description="a folder of .txt/.md files, a .jsonl file, or a BEIR "
                "folder (corpus.jsonl), inside the server's allowed roots",
            ),
        ],
        collection: CollectionName,
        format: Annotated[Literal["auto", "folder", "jsonl", "beir"], Field(description="source format")] = "auto",  # noqa: A002
        chunk_tokens: Annotated[int, Field(ge=16, le=2048, description="tokens per chunk")] = 200,
        overlap: Annotated[int, Field(ge=0, le=512, description="tokens shared by consecutive chunks")] = 40,
        prune: Annotated[bool, Field(description="remove documents no longer in the source")] = False,
        id_field: Annotated[str, Field(description="JSONL: the id field")] = "id",
        text_field: Annotated[str, Field(description="JSONL: the text field")] = "text",
        title_field: Annotated[str, Field(description="JSONL: the title field")] = "title",
        background: Annotated[
            bool,
            Field(description="run as a background job and return its id at once (for large corpora; poll job_status)"),
        ] = False,
        ctx: Context | None = None,
    ) -> IngestOutcome:
        """Chunk, embed and store documents in a collection (created if missing).

        Re-ingesting is safe: unchanged documents are skipped, changed ones replaced (their stale
        chunks removed). Chunk ids are `<doc id>#<n>`; metadata keeps doc_id, chunk, source and title.
        Large corpora: pass `background=true` and poll `job_status` with the returned job id.
        """
        resolved = check_allowed_path(s, path)
        check_chunking(chunk_tokens, overlap)  # before a job starts or a collection is created
        if background:
            params = dict(
                path=str(resolved),
                collection=collection,
                format=format,
                chunk_tokens=chunk_tokens,
                overlap=overlap,
                prune=prune,
                id_field=id_field,
                text_field=text_field,
                title_field=title_field,
            )
            return IngestOutcome(job=await asyncio.to_thread(services.jobs.submit, "ingest", params))
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:
            if ctx is not None:
                asyncio.run_coroutine_threadsafe(
                    ctx.report_progress(done, total, f"embedded {done}/{total} chunks"), loop
                )

        report = await asyncio.to_thread(
            ingest,
            services.docstore,
            resolved,
            collection,
            format=format,
            chunk_tokens=chunk_tokens,
            overlap=overlap,
            prune=prune,
            progress=progress,
            id_field=id_field,
            text_field=text_field,
            title_field=title_field,
            roots=allowed_roots(s),
        )
        return IngestOutcome(report=report)

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def list_collections() -> CollectionList:
        """The document collections `search` can read, with their passage counts."""
        return await asyncio.to_thread(collection_list, services)

    @mcp.resource("adaptrank://collections", mime_type="application/json")
    @resource_errors
    def collections_resource() -> str:
        """All document collections and their sizes (as list_collections returns them)."""
        return collection_list(services).model_dump_json(indent=2)
