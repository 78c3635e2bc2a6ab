"""The training MCP tools through the real protocol (in-memory fastmcp Client): a job id at once,
progress notifications while waiting, status/list/cancel/resume, datasets, bad input, MCP sampling."""

from __future__ import annotations

import threading

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.settings import Settings
from adaptrank.server.context import Services
from adaptrank.server.jobs import JobManager
from adaptrank.server.jobs.kinds import generate_job

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def app_settings(tmp_path, corpus_dir) -> Settings:
    return Settings(home=tmp_path / "home", allowed_roots=[corpus_dir.parent])


@pytest.fixture
def gate():
    return threading.Event()


@pytest.fixture
def services(app_settings, gen, gate):
    jobs = JobManager(app_settings)

    def generate(handle):
        gate.wait(30)  # lets a test look at a job before it runs
        return generate_job(handle, llm=gen.scripted())

    jobs.register("generate", generate)
    s = Services(app_settings, jobs=jobs)
    yield s
    s.close()


ARGS = dict(source="folder", output_name="toy", queries_per_document=1, negatives=2, question_types="medical")


async def test_generate_returns_a_job_then_reports_progress(app, corpus_dir, gate):
    async with Client(app) as client:
        tools = {t.name for t in await client.list_tools()}
        assert {
            "generate_training_data",
            "job_status",
            "list_jobs",
            "cancel_job",
            "resume_job",
            "list_datasets",
        } <= tools
        started = await client.call_tool("generate_training_data", {**ARGS, "path": str(corpus_dir)})
        job = started.structured_content
        assert job["state"] in ("queued", "running") and job["kind"] == "generate"
        assert job["params"]["path"] == str(corpus_dir) and job["params"]["_restrict_paths"] is True
        gate.set()
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        done = await client.call_tool(
            "job_status", {"job_id": job["id"], "wait_seconds": 30}, progress_handler=on_progress
        )
        status = done.structured_content
        assert status["state"] == "succeeded", status["error"]
        assert status["result"]["dataset"] == "toy" and status["result"]["counts"]["groups"] == 24
        assert seen and seen[-1][0] == 24 and seen[-1][1] == 24  # notifications from the job's stream
        listed = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        datasets = (await client.call_tool("list_datasets", {})).structured_content["datasets"]
        assert datasets[0]["name"] == "toy" and datasets[0]["counts"]["groups"] == 24 and datasets[0]["latest"]
        res = await client.read_resource("adaptrank://datasets")
        assert '"toy"' in res[0].text


async def test_cancel_then_resume(app, corpus_dir, gate):
    async with Client(app) as client:
        job = (await client.call_tool("generate_training_data", {**ARGS, "path": str(corpus_dir)})).structured_content
        cancelled = (await client.call_tool("cancel_job", {"job_id": job["id"]})).structured_content
        assert cancelled["cancel_requested"] is True
        gate.set()
        status = (await client.call_tool("job_status", {"job_id": job["id"], "wait_seconds": 30})).structured_content
        assert status["state"] == "cancelled"
        resumed = (await client.call_tool("resume_job", {"job_id": job["id"], "wait_seconds": 30})).structured_content
        assert resumed["state"] == "succeeded" and resumed["attempts"] == 2


async def test_bad_input_fails_before_a_job_starts(app, services, corpus_dir, tmp_path):
    async with Client(app) as client:
        with pytest.raises(ToolError, match="outside the allowed roots"):
            await client.call_tool("generate_training_data", {**ARGS, "path": "/etc"})
        with pytest.raises(ToolError, match="path: is required"):
            await client.call_tool("generate_training_data", {**ARGS})
        with pytest.raises(ToolError, match="unknown collection 'nope'"):
            await client.call_tool("generate_training_data", {**ARGS, "source": "chroma", "collection": "nope"})
        with pytest.raises(ToolError, match="sampling"):
            await client.call_tool(
                "generate_training_data", {**ARGS, "path": str(corpus_dir), "llm_backend": "sampling"}
            )
        with pytest.raises(ToolError, match="no job 'nope'"):
            await client.call_tool("job_status", {"job_id": "nope"})
        with pytest.raises(ToolError, match="queries_per_document"):
            await client.call_tool(
                "generate_training_data", {**ARGS, "path": str(corpus_dir), "queries_per_document": 0}
            )
    assert services.jobs.list() == []


async def test_mcp_sampling_backend_uses_the_callers_llm(app, gen, corpus_dir, gate):
    """llm_backend='sampling': the job's queries and judgements come from the client's handler."""
    asked = []

    def handler(messages, params, context):
        prompt = [{"role": "system", "content": params.system_prompt or ""}] + [
            {"role": m.role, "content": m.content.text} for m in messages
        ]
        asked.append(prompt)
        return gen.respond(prompt)

    gate.set()
    async with Client(app, sampling_handler=handler) as client:  # modern protocol: no server requests
        with pytest.raises(ToolError, match="2026-07-28 protocol"):
            await client.call_tool(
                "generate_training_data", {**ARGS, "path": str(corpus_dir), "llm_backend": "sampling"}
            )
    async with Client(app, sampling_handler=handler, mode="legacy") as client:
        job = (
            await client.call_tool(
                "generate_training_data",
                {**ARGS, "path": str(corpus_dir), "llm_backend": "sampling", "max_documents": 4, "wait_seconds": 40},
            )
        ).structured_content
        assert job["state"] == "succeeded", job["error"]
    assert job["result"]["counts"]["groups"] == 4
    assert any(p[-1]["content"].startswith("Query:") for p in asked)  # the judge asked the client too
    assert any("Reply with exactly one of: yes, no" in p[0]["content"] for p in asked)
