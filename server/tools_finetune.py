"""MCP tools ``finetune_reranker`` and ``evaluate_reranker``, both background jobs.

They validate their input at once (an unknown dataset or base model, a group size larger than the
negatives the dataset has: a tool error naming the field), start a job and return its id. Progress
(steps, loss, dev metric) streams through the job: ``job_status(job_id, wait_seconds)`` relays it as
MCP progress notifications; ``cancel_job`` stops a run and leaves the model store as it was.

No ``from __future__ import annotations``: fastmcp must see the annotated types as objects.
"""

import asyncio
from typing import Annotated

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from adaptrank.core.engine.models import describe
from adaptrank.core.errors import InputError
from adaptrank.core.paths import check_allowed_path
from adaptrank.server.context import Services
from adaptrank.server.errors import tool_errors
from adaptrank.server.jobs import JobInfo
from adaptrank.server.tools_training import Wait, wait_for_job
from adaptrank.training.evaluate import EvaluateParams
from adaptrank.training.finetune import load_dataset_groups, parse_params, resolve_base
from adaptrank.training.params import (
    BaseModelSpec,
    Depth,
    Epochs,
    FirstStage,
    GroupSize,
    LearningRate,
    MaxQueries,
    Method,
    Models,
    Promote,
    parse,
)

STARTS_JOB = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]


def register(mcp: FastMCP, services: Services) -> None:
    s = services.settings

    @mcp.tool(annotations=STARTS_JOB)
    @tool_errors
    async def finetune_reranker(
        dataset: Annotated[
            Name, Field(description="dataset name (or name@version) from generate_training_data / list_datasets")
        ],
        base_model: Annotated[
            BaseModelSpec,
            Field(
                description="start from: 'zero-shot', a model-store name, a model folder inside the server's allowed roots, or an HF id if the operator allows hub models (default: the offline MiniLM)"
            ),
        ] = None,
        epochs: Epochs = 2.0,
        group_size: GroupSize = 8,
        learning_rate: LearningRate = None,
        output_name: Annotated[
            Name | None, Field(description="model-store name (default '<dataset>-reranker')")
        ] = None,
        promote: Promote = None,
        method: Method = "auto",
        wait_seconds: Wait = 0,
        ctx: Context | None = None,
    ) -> JobInfo:
        """Fine-tune the reranker on a generated dataset with the LCE loss, as a background job.

        The new model is saved as a new version of `output_name` with a card (base, dataset, loss,
        hyper-parameters, dev metrics before/after). It becomes active only if it beats the active
        model (or the zero-shot default) on the dataset's dev split, unless `promote` says otherwise.
        Returns the job at once: `job_status(job_id, wait_seconds)` for progress (steps, loss, dev
        metric) and the result, `cancel_job(job_id)` to stop (the active model is never touched).
        """
        params = parse_params(
            {
                k: v
                for k, v in dict(
                    dataset=dataset,
                    base_model=base_model,
                    epochs=epochs,
                    group_size=group_size,
                    learning_rate=learning_rate,
                    output_name=output_name,
                    promote=promote,
                    method=method,
                ).items()
                if v is not None
            }
        )
        services.model_access.check(params.base_model, "base_model")

        def check() -> None:  # fail now on what can be checked cheaply
            load_dataset_groups(params, s)
            resolve_base(params.base_model, services.store)

        await asyncio.to_thread(check)
        info = await asyncio.to_thread(services.jobs.submit, "finetune", params.model_dump(exclude_none=True))
        return await wait_for_job(services.jobs, info.id, wait_seconds, ctx)

    @mcp.tool(annotations=STARTS_JOB)
    @tool_errors
    async def evaluate_reranker(
        path: Annotated[
            str,
            Field(
                min_length=1,
                max_length=4096,
                description="a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv) inside the server's allowed roots",
            ),
        ],
        models: Models = ["zero-shot"],  # noqa: B006 - pydantic copies defaults
        first_stage: FirstStage = "bm25",
        depth: Depth = 30,
        max_queries: MaxQueries = None,
        wait_seconds: Wait = 0,
        ctx: Context | None = None,
    ) -> JobInfo:
        """Evaluate rerankers on BEIR-format data, as a background job: the first stage's top `depth`
        reranked by each model; nDCG@10, MRR@10 and Recall@depth per model, the first stage as
        baseline. The job's result holds the table."""
        resolved = check_allowed_path(s, path)
        for name in ("corpus.jsonl", "queries.jsonl"):  # fail now, not in the job
            if not (resolved / name).is_file():
                raise InputError("path", f"{path!r} has no {name} (a BEIR folder is expected)")
        for i, m in enumerate(models):
            await asyncio.to_thread(services.model_access.check, m, f"models[{i}]")
            await asyncio.to_thread(describe, m, services.store)  # unknown model: error now
        params = parse(
            EvaluateParams,
            {
                "path": str(resolved),
                "models": list(models),
                "first_stage": first_stage,
                "depth": depth,
                "max_queries": max_queries or None,
            },
        )
        job_params = params.model_dump(exclude_none=True, exclude={"seed"})
        info = await asyncio.to_thread(services.jobs.submit, "evaluate", job_params)
        return await wait_for_job(services.jobs, info.id, wait_seconds, ctx)
