"""MCP tools search / ingest_documents / list_collections through an in-memory fastmcp Client (real MiniLM, real Chroma)."""

from __future__ import annotations

import json

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from search_corpus import Q

from adaptrank.core.llm.scripted import ScriptedLLM
from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_ingest_then_search_with_provenance(app, corpus):
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total))

    async with Client(app, progress_handler=on_progress) as client:
        tools = {t.name for t in await client.list_tools()}
        assert {"search", "ingest_documents", "list_collections"} <= tools
        rep = (
            await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
        ).structured_content["report"]
        assert rep["documents"] == 3 and rep["added"] == 3 and rep["collection_count"] == 3
        again = (
            await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
        ).structured_content["report"]
        assert again["unchanged"] == 3 and again["chunks_written"] == 0

        listed = (await client.call_tool("list_collections", {})).structured_content
        assert listed["collections"] == [{"name": "notes", "count": 3}]
        resource = await client.read_resource("adaptrank://collections")
        assert json.loads(resource[0].text)["collections"][0]["name"] == "notes"

        res = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "top_n": 2, "k": 1})
        ).structured_content
    assert progress and progress[-1] == (3, 3)
    assert res["decomposition"] == "rule"  # llm=false (default): rules split the question
    assert res["queries"] == [Q, "What causes gout?", "How is asthma treated?"]
    top = {r["metadata"]["doc_id"]: r for r in res["results"]}
    assert set(top) == {"gout.md", "asthma.md"}
    assert {f["query"] for f in top["asthma.md"]["found_by"]} >= {"How is asthma treated?"}
    assert [s["name"] for s in res["trace"]["stages"]] == ["decompose", "retrieve", "merge", "rerank"]
    assert res["model"].startswith("bi-encoder:")


async def test_caller_sub_questions_and_no_decomposition(app, corpus):
    async with Client(app) as client:
        await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
        res = (
            await client.call_tool(
                "search",
                {
                    "question": Q,
                    "collection": "notes",
                    "k": 1,
                    "sub_questions": ["Which city is the capital of France?"],
                },
            )
        ).structured_content
        assert res["decomposition"] == "caller" and res["queries"][1] == "Which city is the capital of France?"
        assert "paris.txt" in {r["metadata"]["doc_id"] for r in res["results"]}
        off = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "decompose": False})
        ).structured_content
        assert off["queries"] == [Q] and off["decomposition"] == "off"


async def test_search_uses_the_services_llm_when_there_is_one(tmp_path, corpus, minilm):
    class WithLLM(Services):
        @property
        def llm(self):
            return ScriptedLLM(lambda p: '{"sub_questions": ["What is the cause of gout?", "Asthma treatment?"]}')

    services = WithLLM(
        Settings(
            home=tmp_path / "home2",
            allowed_roots=[corpus],
            embedding_model=minilm,
            default_model=f"bi-encoder:{minilm}",
        )
    )
    try:
        async with Client(create_app(services=services)) as client:
            await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
            res = (
                await client.call_tool("search", {"question": Q, "collection": "notes", "llm": True})
            ).structured_content
        assert res["decomposition"] == "llm" and res["queries"][1:] == [
            "What is the cause of gout?",
            "Asthma treatment?",
        ]
    finally:
        services.close()


async def test_a_message_is_cleaned_and_the_llm_only_answers_when_llm_is_false(tmp_path, corpus, minilm):
    """Issue 13: chatter is dropped before retrieval (and reported); llm=false with answer=true keeps the
    rules for decomposition (the LLM writes the answer only)."""
    asked: list[str] = []

    def respond(prompt):
        text = prompt[-1]["content"]
        asked.append(text)
        if text.startswith("Message:"):
            return '{"sub_questions": ["Is gout curable?", "What causes gout?"]}'
        return '{"answer": "Uric acid crystals [1].", "citations": [1]}'

    class WithLLM(Services):
        @property
        def llm(self):
            return ScriptedLLM(respond)

    services = WithLLM(
        Settings(
            home=tmp_path / "home3",
            allowed_roots=[corpus],
            embedding_model=minilm,
            default_model=f"bi-encoder:{minilm}",
        )
    )
    message = "Hi there! My son has it. What causes gout? Thanks in advance, Ann"
    try:
        async with Client(create_app(services=services)) as client:
            await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
            res = (
                await client.call_tool(
                    "search", {"question": message, "collection": "notes", "answer": True, "top_n": 2}
                )
            ).structured_content
            raw = (
                await client.call_tool(
                    "search", {"question": message, "collection": "notes", "clean": False, "decompose": False}
                )
            ).structured_content
        assert res["question"] == message and res["cleaned_question"] == "What causes gout?"
        assert res["decomposition"] == "single" and res["queries"] == ["What causes gout?"]
        assert res["results"][0]["metadata"]["doc_id"].startswith("gout")
        assert res["answer"]["citations"] and not any(t.startswith("Message:") for t in asked)
        assert raw["cleaned_question"] is None and raw["queries"] == [message]
    finally:
        services.close()


async def test_errors_reach_the_caller(app, corpus, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("secret")
    async with Client(app) as client:
        with pytest.raises(ToolError, match="path: .*outside the allowed roots"):
            await client.call_tool("ingest_documents", {"path": str(outside), "collection": "notes"})
        with pytest.raises(ToolError, match="path: .*does not exist"):
            await client.call_tool("ingest_documents", {"path": str(corpus / "nope"), "collection": "notes"})
        with pytest.raises(ToolError, match="collection: no collection 'nope'"):
            await client.call_tool("search", {"question": Q, "collection": "nope"})
        with pytest.raises(ToolError, match="collection"):
            await client.call_tool("search", {"question": Q, "collection": "../x"})
        with pytest.raises(ToolError, match="top_n"):
            await client.call_tool("search", {"question": Q, "collection": "notes", "top_n": 0})
        await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})
        ok = await client.call_tool("search", {"question": "gout?", "collection": "notes"})  # still serving
        assert ok.structured_content["results"]


def test_cli_ingest_ask_collections(tmp_path, corpus, minilm, monkeypatch):
    from typer.testing import CliRunner

    from adaptrank.server.cli import app as cli

    monkeypatch.setenv("ADAPTRANK_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("ADAPTRANK_EMBEDDING_MODEL", minilm)
    monkeypatch.setenv("ADAPTRANK_DEFAULT_MODEL", f"bi-encoder:{minilm}")
    runner = CliRunner()
    first = runner.invoke(cli, ["ingest", str(corpus), "-c", "notes", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == 3
    again = runner.invoke(cli, ["ingest", str(corpus), "-c", "notes", "--json"])
    assert json.loads(again.stdout)["unchanged"] == 3

    res = runner.invoke(cli, ["ask", Q, "-c", "notes", "-k", "1", "--json", "--rerank", "fusion"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["queries"] == [Q, "What causes gout?", "How is asthma treated?"]
    assert {r["metadata"]["doc_id"] for r in body["results"]} == {"gout.md", "asthma.md"}
    assert body["results"][0]["query_scores"] and len(body["results"][0]["query_scores"]) == 3

    table = runner.invoke(cli, ["ask", Q, "-c", "notes", "-k", "1"], terminal_width=200)
    assert table.exit_code == 0 and "found by" in table.stdout and "q2:1" in table.stdout and "trace:" in table.stdout

    # issue 13's example: the pronoun gets its subject, the chatter goes
    pron = runner.invoke(cli, ["ask", "Hi! What causes gout, and how is it treated? Thanks", "-c", "notes", "--json"])
    body = json.loads(pron.stdout)
    assert body["decomposition"] == "rule" and body["cleaned_question"] == "What causes gout, and how is it treated?"
    assert body["queries"][1:] == ["What causes gout?", "How is gout treated?"]

    listed = runner.invoke(cli, ["collections", "--json"])
    assert json.loads(listed.stdout)["collections"] == [{"name": "notes", "count": 3}]

    missing = runner.invoke(cli, ["ask", Q, "-c", "nope"])
    assert missing.exit_code == 2 and "no collection 'nope'" in missing.stderr


async def test_background_ingest_job(app, services, corpus):
    import asyncio

    async with Client(app) as client:
        job = (
            await client.call_tool(
                "ingest_documents", {"path": str(corpus), "collection": "bg-notes", "background": True}
            )
        ).structured_content["job"]
        assert job["kind"] == "ingest" and job["state"] in ("queued", "running", "succeeded")
        info = await asyncio.to_thread(services.jobs.wait, job["id"], 120)
        assert info.state.value == "succeeded", info.error
        assert info.result["added"] == 3 and info.result["collection"] == "bg-notes"
        assert info.progress.done == info.progress.total == 3
        listed = (await client.call_tool("list_collections", {})).structured_content
        assert {"name": "bg-notes", "count": 3} in listed["collections"]
