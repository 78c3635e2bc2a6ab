"""search(llm="sampling"): the calling client's own LLM decomposes the question over MCP sampling
(issue 13). A real fastmcp Client (in-memory transport, handshake-era session) with a
sampling_handler, a real Chroma collection embedded with the offline MiniLM."""

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

SUBS = ["What is the cause of gout?", "What is the treatment for asthma?"]  # not what the rules write


async def _ingest(app, corpus):
    async with Client(app) as client:
        await client.call_tool("ingest_documents", {"path": str(corpus), "collection": "notes"})


class Caller:
    """The calling agent's model: records what the server asked, answers from a script."""

    def __init__(self, decomposition: str, answer: str = '{"answer": "Uric acid crystals [1].", "citations": [1]}'):
        self.decomposition = decomposition
        self.answer = answer
        self.asked: list[dict] = []

    def __call__(self, messages, params, context):
        system = params.system_prompt or ""
        last = messages[-1].content.text
        kind = "answer" if "numbered passages" in system else "decompose"
        self.asked.append({"kind": kind, "system": system, "last": last})
        return self.answer if kind == "answer" else self.decomposition


def _stage(res, name):
    return next(s for s in res["trace"]["stages"] if s["name"] == name)


async def test_sampling_decomposes_with_the_callers_llm(app, corpus):
    await _ingest(app, corpus)
    caller = Caller(json.dumps({"sub_questions": SUBS}))
    async with Client(app, sampling_handler=caller, mode="legacy") as client:
        schema = next(t for t in await client.list_tools() if t.name == "search").input_schema
        assert "ctx" not in schema["properties"]
        assert "sampling" in json.dumps(schema["properties"]["llm"])
        res = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "k": 1, "llm": "sampling"})
        ).structured_content
    assert res["decomposition"] == "llm", res["decomposition_error"]
    assert res["decomposition_error"] is None
    assert res["queries"] == [Q, *SUBS]
    assert [a["kind"] for a in caller.asked] == ["decompose"]
    assert caller.asked[0]["last"].endswith(Q) and "Reply with JSON only." in caller.asked[0]["system"]
    assert _stage(res, "decompose")["detail"]["llm"] == "sampling:mcp-client"
    top = {r["metadata"]["doc_id"]: r for r in res["results"]}
    assert {f["query"] for f in top["asthma.md"]["found_by"]} >= {SUBS[1]}


async def test_sampling_also_writes_the_answer(app, corpus):
    """One LLM per request: with llm='sampling' the answer comes from the caller's model too."""
    await _ingest(app, corpus)
    caller = Caller(json.dumps({"sub_questions": SUBS}))
    async with Client(app, sampling_handler=caller, mode="legacy") as client:
        res = (
            await client.call_tool(
                "search", {"question": Q, "collection": "notes", "k": 1, "top_n": 2, "llm": "sampling", "answer": True}
            )
        ).structured_content
    assert [a["kind"] for a in caller.asked] == ["decompose", "answer"]
    assert res["answer"]["valid"] and res["answer"]["text"] == "Uric acid crystals [1]."
    assert res["answer"]["citations"] == [res["results"][0]["id"]]


async def test_junk_from_the_caller_falls_back_to_rules(app, corpus):
    await _ingest(app, corpus)
    caller = Caller("Sure! Here are some thoughts about gout and asthma, no JSON though.")
    async with Client(app, sampling_handler=caller, mode="legacy") as client:
        res = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "k": 1, "llm": "sampling"})
        ).structured_content
    assert caller.asked and all(a["kind"] == "decompose" for a in caller.asked)
    assert res["decomposition"] == "rule"
    assert res["decomposition_error"] and "does not support sampling" not in res["decomposition_error"]
    assert _stage(res, "decompose")["detail"]["error"] == res["decomposition_error"]
    assert res["queries"][0] == Q and not set(SUBS) & set(res["queries"])
    assert not any("no JSON though" in q for q in res["queries"])
    assert res["results"]


async def test_caller_that_fails_the_request_falls_back_to_rules(app, corpus):
    def refuse(messages, params, context):
        raise RuntimeError("the user declined the sampling request")

    await _ingest(app, corpus)
    async with Client(app, sampling_handler=refuse, mode="legacy") as client:
        res = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "k": 1, "llm": "sampling"})
        ).structured_content
    assert res["decomposition"] == "rule"
    assert "declined" in res["decomposition_error"]


async def test_client_without_sampling_gets_rules_and_the_reason(app, corpus):
    await _ingest(app, corpus)
    async with Client(app, mode="legacy") as client:  # handshake-era, but no sampling capability
        res = (
            await client.call_tool(
                "search", {"question": Q, "collection": "notes", "k": 1, "top_n": 2, "llm": "sampling", "answer": True}
            )
        ).structured_content
    assert res["decomposition"] == "rule"
    assert "the MCP client does not support sampling" in res["decomposition_error"]
    assert "did not declare" in res["decomposition_error"]
    detail = _stage(res, "decompose")["detail"]
    assert detail["llm"] == "sampling (unavailable)" and "does not support sampling" in detail["llm_error"]
    assert res["results"]
    assert res["answer"]["valid"] is False and "does not support sampling" in res["answer"]["text"]

    caller = Caller(json.dumps({"sub_questions": SUBS}))
    async with Client(app, sampling_handler=caller) as client:  # modern protocol: no server requests
        res = (
            await client.call_tool("search", {"question": Q, "collection": "notes", "k": 1, "llm": "sampling"})
        ).structured_content
    assert caller.asked == []
    assert res["decomposition"] == "rule" and "does not support sampling" in res["decomposition_error"]
    assert "2026-07-28" in res["decomposition_error"]


async def test_caller_sub_questions_need_no_sampling(app, corpus):
    """sub_questions still wins: a caller that decomposes itself is never asked to sample."""
    await _ingest(app, corpus)
    caller = Caller(json.dumps({"sub_questions": SUBS}))
    async with Client(app, sampling_handler=caller, mode="legacy") as client:
        res = (
            await client.call_tool(
                "search",
                {
                    "question": Q,
                    "collection": "notes",
                    "k": 1,
                    "llm": "sampling",
                    "sub_questions": ["Which city is the capital of France?"],
                },
            )
        ).structured_content
    assert res["decomposition"] == "caller" and res["queries"][1:] == ["Which city is the capital of France?"]
    assert caller.asked == [] and res["decomposition_error"] is None


async def test_llm_choices_stay_backwards_compatible(tmp_path, corpus, minilm):
    """true and 'server' both mean the server's LLM; false means rules; anything else is refused."""

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
            for choice in (True, "server"):
                res = (
                    await client.call_tool("search", {"question": Q, "collection": "notes", "llm": choice})
                ).structured_content
                assert res["decomposition"] == "llm", choice
                assert res["queries"][1:] == ["What is the cause of gout?", "Asthma treatment?"]
            res = (
                await client.call_tool("search", {"question": Q, "collection": "notes", "llm": False})
            ).structured_content
            assert res["decomposition"] == "rule" and res["decomposition_error"] is None
            with pytest.raises(ToolError, match="llm"):
                await client.call_tool("search", {"question": Q, "collection": "notes", "llm": "gpt-5"})
    finally:
        services.close()


async def test_run_search_outside_mcp_refuses_sampling(services):
    from adaptrank.server.tools_search import run_search

    with pytest.raises(ValueError, match="needs the tool's MCP request"):
        await run_search(services, Q, "notes", llm="sampling")
