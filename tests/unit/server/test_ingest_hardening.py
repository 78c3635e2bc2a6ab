"""Issue 9, defects 4 and 8 (ingest): every job kind resumes in a fresh process; a refused ingest
leaves no empty collection; a NUL byte in a path is a field error.

A fresh ``Services`` is what a restarted server builds: before the fix ``ingest`` was registered
only once a background ingest had run in the process, so ``resume_job`` answered "unknown job kind
'ingest'".
"""

from __future__ import annotations

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.jobs import JOB_KINDS, JobManager, JobState

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def settings(tmp_path, tiny_bi_encoder):
    notes = tmp_path / "root" / "notes"
    notes.mkdir(parents=True)
    for i in range(3):
        (notes / f"d{i}.md").write_text(f"# Doc {i}\n\nDocument number {i} is about topic {i}.")
    return Settings(
        home=tmp_path / "home",
        allowed_roots=[tmp_path / "root"],
        embedding_model=tiny_bi_encoder,
        default_model=f"bi-encoder:{tiny_bi_encoder}",
    )


def test_every_job_kind_is_known_to_a_fresh_manager(settings):
    jobs = JobManager(settings)
    for kind in ["generate", "finetune", "evaluate", "adapt", "ingest"]:
        assert kind in JOB_KINDS
        jobs._resolve(kind)  # importable, no InputError
    jobs.close()


async def test_an_ingest_job_resumes_after_a_restart(settings):
    path = str(settings.allowed_roots[0] / "notes")
    params = dict(
        path=path,
        collection="notes",
        format="auto",
        chunk_tokens=200,
        overlap=40,
        prune=False,
        id_field="id",
        text_field="text",
        title_field="title",
    )
    first = JobManager(settings)

    def crashed(handle):
        raise RuntimeError("the process died")

    job = first.submit("ingest", params, fn=crashed)
    assert first.wait(job.id, timeout=30).state == JobState.failed
    first.close()

    services = Services(settings)  # the restarted server: nothing ingested in this process yet
    try:
        async with Client(create_app(services=services)) as client:
            res = (await client.call_tool("resume_job", {"job_id": job.id, "wait_seconds": 30})).structured_content
            assert res["state"] == "succeeded", res
            assert res["result"]["added"] == 3 and res["result"]["collection_count"] == 3
    finally:
        services.close()


async def test_refused_ingest_creates_no_collection(settings):
    services = Services(settings)
    path = str(settings.allowed_roots[0] / "notes")
    try:
        async with Client(create_app(services=services)) as client:
            for background in (False, True):
                with pytest.raises(
                    ToolError, match=r"overlap: is 300; it must be between 0 and half of chunk_tokens: 100"
                ):
                    await client.call_tool(
                        "ingest_documents",
                        {
                            "path": path,
                            "collection": "notes",
                            "chunk_tokens": 200,
                            "overlap": 300,
                            "background": background,
                        },
                    )
            # capped by what the embedding model reads: still refused before anything is created
            with pytest.raises(ToolError, match="overlap: .*capped at"):
                await client.call_tool(
                    "ingest_documents", {"path": path, "collection": "notes", "chunk_tokens": 2048, "overlap": 500}
                )
            listed = (await client.call_tool("list_collections", {})).structured_content
            assert listed["collections"] == []
            assert services.jobs.list() == []
    finally:
        services.close()


@pytest.mark.parametrize("path", ["notes\0", "\0", "/etc/passwd\0.txt"])
async def test_nul_byte_in_an_ingest_path_is_a_field_error(settings, path):
    services = Services(settings)
    try:
        async with Client(create_app(services=services)) as client:
            with pytest.raises(ToolError, match="^path: must not contain a NUL byte$"):
                await client.call_tool("ingest_documents", {"path": path, "collection": "notes"})
    finally:
        services.close()
