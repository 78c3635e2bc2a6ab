"""MCP tools for training data: ``generate_training_data`` as a background job, and the job tools
``job_status``, ``list_jobs``, ``cancel_job``, ``resume_job``, plus ``list_datasets`` (also the
resource ``adaptrank://datasets``).

MCP clients give up on a tool call after about a minute and many send no progress token, so
``generate_training_data`` validates its input, starts a job and returns its id at once. A caller
that wants to watch passes ``wait_seconds`` (to this tool or to ``job_status``): the call then
streams MCP progress notifications from the job's progress stream (the same one that drives the
CLI's progress bar) until the job ends or the wait is over, and returns the status.

MCP background tasks (SEP-2663, ``task=True``) are not used: in fastmcp 4 they need the
``fastmcp-tasks`` extension (``fastmcp[tasks]`` pins ``fastmcp-tasks==4.1.6``, which is not
published; 4.1.4 is the newest) and a Docket/Redis worker, and they would duplicate the SQLite jobs,
which already survive restarts, resume from checkpoints and cancel across processes.

No ``from __future__ import annotations``: fastmcp must see the annotated types as objects.
"""

import asyncio
from typing import Annotated, Literal

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from adaptrank.core.errors import NotFoundError
from adaptrank.core.llm.factory import get_llm
from adaptrank.core.paths import check_allowed_path
from adaptrank.server.context import Services
from adaptrank.server.errors import resource_errors, tool_errors
from adaptrank.server.jobs import JOB_KINDS, JobInfo, JobManager
from adaptrank.server.jobs.kinds import generate_job
from adaptrank.training.generate import GenerateParams
from adaptrank.training.params import (
    ConsistencyDepth,
    Judge,
    MaxDocuments,
    MaxMinutes,
    Negatives,
    QueriesPerDocument,
    QueryLog,
    QuestionTypes,
    parse,
)

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
STARTS_JOB = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

JobId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="a job id")]
Wait = Annotated[
    float,
    Field(
        ge=0,
        le=50,
        description="seconds to wait for the job, sending progress notifications (0-50; "
        "keep it under your client's timeout)",
    ),
]


class DatasetInfo(BaseModel):
    name: str
    version: str
    latest: bool
    created: float
    llm: str | None
    judge: str | None
    counts: dict[str, int]
    path: str


class DatasetList(BaseModel):
    root: str
    datasets: list[DatasetInfo]


class JobList(BaseModel):
    jobs: list[JobInfo]


def dataset_list(services: Services) -> DatasetList:
    refs = services.datasets.list()
    return DatasetList(
        root=str(services.datasets.root),
        datasets=[
            DatasetInfo(
                name=r.name,
                version=r.version,
                latest=r.latest,
                created=r.card.created,
                llm=r.card.llm,
                judge=r.card.judge,
                counts=r.card.counts,
                path=str(r.path),
            )
            for r in refs
        ],
    )


async def wait_for_job(jobs: JobManager, job_id: str, wait_seconds: float | None, ctx: Context | None) -> JobInfo:
    """Wait up to ``wait_seconds`` (None: until it ends) for a job to finish, relaying its progress
    as MCP progress notifications; returns its status either way."""
    info = await asyncio.to_thread(jobs.get, job_id)
    if (wait_seconds is not None and wait_seconds <= 0) or info.finished_state:
        return info
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[JobInfo] = asyncio.Queue()
    unsubscribe = jobs.subscribe(job_id, lambda job: loop.call_soon_threadsafe(updates.put_nowait, job))
    deadline = loop.time() + (wait_seconds if wait_seconds is not None else float("inf"))
    try:
        while not info.finished_state:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                info = await asyncio.wait_for(updates.get(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                info = await asyncio.to_thread(jobs.get, job_id)  # a job another process runs
            if ctx is not None:
                p = info.progress
                await ctx.report_progress(p.done, p.total, p.message or info.state.value)
    finally:
        unsubscribe()
    return await asyncio.to_thread(jobs.get, job_id)


def register(mcp: FastMCP, services: Services) -> None:
    s = services.settings

    @mcp.tool(annotations=STARTS_JOB)
    @tool_errors
    async def generate_training_data(
        source: Annotated[
            Literal["chroma", "beir", "folder"],
            Field(description="a Chroma collection, a BEIR corpus (corpus.jsonl), or a folder of .txt/.md files"),
        ],
        output_name: Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                description="dataset name (a new version is added if it exists)",
            ),
        ],
        collection: Annotated[
            str | None, Field(description="the collection, when source is 'chroma' (see list_collections)")
        ] = None,
        path: Annotated[
            str | None, Field(description="the BEIR folder or text folder, inside the server's allowed roots")
        ] = None,
        max_documents: MaxDocuments = 200,
        max_minutes: MaxMinutes = 0,
        queries_per_document: QueriesPerDocument = 2,
        negatives: Negatives = 7,
        judge: Judge = True,
        llm_backend: Annotated[
            Literal["transformers", "llamacpp", "openai", "vllm", "sampling"] | None,
            Field(
                description="default: the server's (ADAPTRANK_LLM_BACKEND); 'sampling' asks your own LLM through MCP sampling, and then the call lasts until the job ends (sampling only reaches you during the call)"
            ),
        ] = None,
        llm_model: Annotated[
            str | None,
            Field(
                description="model for the backend (default: the server's); for local backends a folder or .gguf file inside the server's allowed roots"
            ),
        ] = None,
        question_types: QuestionTypes = "general",
        consistency_depth: ConsistencyDepth = None,
        queries: Annotated[
            QueryLog,
            Field(
                description="a query log inside the server's allowed roots: real, unlabelled queries (.txt, one per line, or .jsonl with 'text'); labelled by mining and the LLM, they become dev queries the promotion gate checks (and, with log_train, training queries)"
            ),
        ] = None,
        wait_seconds: Wait = 0,
        ctx: Context | None = None,
    ) -> JobInfo:
        """Generate a training dataset for the reranker from your own documents, as a background job.

        An LLM writes `queries_per_document` search questions per document; candidates are mined with
        BM25 and dense retrieval; the LLM judge labels them, and the dataset (groups of query,
        positive passage, hard negatives; split by document) is saved under `output_name`.
        Returns the job at once: poll `job_status(job_id)` (or pass `wait_seconds`), `cancel_job`
        to stop; `list_datasets` shows the result. Interrupted jobs resume with `resume_job`.
        """
        raw = {
            "source": source,
            "collection": collection,
            "path": path,
            "output_name": output_name,
            "max_documents": max_documents,
            "max_minutes": max_minutes,
            "queries_per_document": queries_per_document,
            "negatives": negatives,
            "judge": judge,
            "llm_backend": llm_backend,
            "llm_model": llm_model,
            "question_types": question_types,
            "consistency_depth": consistency_depth,
            "queries": queries,
        }
        params = parse(GenerateParams, raw)
        # Fail now, not in the job, on what can be checked cheaply.
        services.model_access.check_llm(params.llm_backend, params.llm_model, "llm_model")
        if params.path:
            check_allowed_path(s, params.path)
        if params.queries:
            check_allowed_path(s, params.queries, "queries")
        if params.source == "chroma":
            known = await asyncio.to_thread(services.docstore.list_collections)
            if params.collection not in known:
                raise NotFoundError("collection", f"unknown collection {params.collection!r} (known: {known})")
        fn = None
        if (llm_backend or s.llm_backend) == "sampling":
            llm = get_llm(s, "sampling", llm_model, ctx=ctx)  # raises when the client cannot sample
            fn = lambda handle: generate_job(handle, llm=llm, docstore=services.docstore)  # noqa: E731
        elif params.source == "chroma":
            fn = lambda handle: generate_job(handle, docstore=services.docstore)  # noqa: E731 - share the open store
        job_params = {**params.model_dump(exclude_none=True), "_restrict_paths": True}
        info = await asyncio.to_thread(services.jobs.submit, "generate", job_params, fn=fn)
        if (llm_backend or s.llm_backend) != "sampling":
            return await wait_for_job(services.jobs, info.id, wait_seconds, ctx)
        # MCP sampling can only reach the client while this call is open: wait for the end.
        try:
            return await wait_for_job(services.jobs, info.id, None, ctx)
        except asyncio.CancelledError:
            await asyncio.to_thread(services.jobs.cancel, info.id)
            raise

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def job_status(job_id: JobId, wait_seconds: Wait = 0, ctx: Context | None = None) -> JobInfo:
        """A background job's state (queued, running, succeeded, failed, cancelled, interrupted),
        progress (done/total/message), parameters, result (e.g. the dataset written) or error."""
        return await wait_for_job(services.jobs, job_id, wait_seconds, ctx)

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def list_jobs(
        kind: Annotated[
            str | None, Field(max_length=64, description=f"only this kind ({', '.join(sorted(JOB_KINDS))})")
        ] = None,
        state: Annotated[
            Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None,
            Field(description="only this state"),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="newest first")] = 20,
    ) -> JobList:
        """Background jobs, newest first."""
        return JobList(jobs=await asyncio.to_thread(services.jobs.list, kind, state, limit))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    @tool_errors
    async def cancel_job(job_id: JobId) -> JobInfo:
        """Stop a queued or running job. Finished work is kept in its checkpoint, so
        `resume_job` continues it later; a cancelled job never writes a half-made dataset."""
        return await asyncio.to_thread(services.jobs.cancel, job_id)

    @mcp.tool(annotations=STARTS_JOB)
    @tool_errors
    async def resume_job(job_id: JobId, wait_seconds: Wait = 0, ctx: Context | None = None) -> JobInfo:
        """Continue an interrupted, failed or cancelled job from its checkpoint (finished
        documents are not redone)."""
        info = await asyncio.to_thread(services.jobs.resume, job_id)
        return await wait_for_job(services.jobs, info.id, wait_seconds, ctx)

    @mcp.tool(annotations=READ_ONLY)
    @tool_errors
    async def list_datasets() -> DatasetList:
        """Generated training datasets: every version, its LLM and judge, and its counts."""
        return await asyncio.to_thread(dataset_list, services)

    @mcp.resource("adaptrank://datasets", mime_type="application/json")
    @resource_errors
    def datasets_resource() -> str:
        """All training datasets (as list_datasets returns them)."""
        return dataset_list(services).model_dump_json(indent=2)
