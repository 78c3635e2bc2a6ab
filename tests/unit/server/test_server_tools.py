"""MCP tools through the real protocol, in memory: ``fastmcp.Client(app)`` with a tiny cross-encoder."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services

pytestmark = pytest.mark.timeout(300)

LIMITS = dict(max_documents=5, max_query_chars=40, max_document_chars=60)


@pytest.fixture
def app_settings(tmp_path, tiny_cross_encoder) -> Settings:
    return Settings(
        home=tmp_path / "home", default_model=f"cross-encoder:{tiny_cross_encoder}", microbatch_wait_ms=2.0, **LIMITS
    )


@pytest.fixture
def services(app_settings):
    s = Services(app_settings)
    yield s
    s.close()


async def test_lists_tools_with_limits_in_schema(app):
    async with Client(app) as client:
        tools = {t.name: t for t in await client.list_tools()}
    assert {"rerank", "list_models"} <= set(tools)
    props = tools["rerank"].input_schema["properties"]
    assert props["query"]["maxLength"] == LIMITS["max_query_chars"]
    assert props["documents"]["maxItems"] == LIMITS["max_documents"]
    assert props["documents"]["minItems"] == 1
    top_n = next(x for x in props["top_n"]["anyOf"] if x.get("type") == "integer")
    assert (top_n["minimum"], top_n["maximum"]) == (1, LIMITS["max_documents"])
    assert tools["rerank"].input_schema["required"] == ["query", "documents"]
    assert tools["rerank"].annotations.read_only_hint is True


async def test_rerank_matches_engine_and_keeps_caller_indices(app, services):
    docs = ["gout uric acid", {"id": "b", "text": "paris france", "metadata": {"src": "wiki"}}, "joint pain", "tea"]
    async with Client(app) as client:
        res = await client.call_tool(
            "rerank", {"query": "what causes gout", "documents": docs, "top_n": 3, "return_documents": True}
        )
    body = res.structured_content
    expected = services.reranker.scorer().score_pairs(
        [("what causes gout", d if isinstance(d, str) else d["text"]) for d in docs]
    )
    order = list(np.argsort(-expected, kind="stable"))[:3]
    assert [r["index"] for r in body["results"]] == order
    for r in body["results"]:
        assert r["score"] == pytest.approx(float(expected[r["index"]]), abs=1e-5)
        sent = docs[r["index"]]
        assert r["document"]["text"] == (sent if isinstance(sent, str) else sent["text"])
        assert r["id"] == (None if isinstance(sent, str) else sent["id"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == services.settings.default_model and body["version"]
    # The text content carries the same JSON for clients that ignore structured output.
    assert json.loads(res.content[0].text)["results"] == body["results"]


async def test_rerank_without_documents_in_results_by_default(app):
    async with Client(app) as client:
        res = await client.call_tool("rerank", {"query": "q", "documents": [{"id": "x", "text": "a"}, "b"]})
    results = res.structured_content["results"]
    assert len(results) == 2 and all(r["document"] is None for r in results)
    assert {r["id"] for r in results} == {"x", None}


BAD_CALLS = [
    # (arguments, field, the limit / rule the message must state)
    ({"query": "", "documents": ["a"]}, "query", "at least 1 character"),
    ({"query": "   ", "documents": ["a"]}, "query", "non-empty"),
    ({"query": "q" * 41, "documents": ["a"]}, "query", "at most 40 characters"),
    ({"query": "q", "documents": []}, "documents", "at least 1 item"),
    ({"query": "q", "documents": ["a"] * 6}, "documents", "at most 5 items"),
    ({"query": "q", "documents": ["a", "x" * 61]}, "documents[1].text", "the limit is 60"),
    ({"query": "q", "documents": [{"id": "no-text"}]}, "documents[0].text", "Field required"),
    ({"query": "q", "documents": [7]}, "documents[0]", "valid string"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", "greater than or equal to 1"),
    ({"query": "q", "documents": ["a"], "top_n": 6}, "top_n", "less than or equal to 5"),
    ({"query": "q", "documents": ["a"], "model": "no-such-model"}, "model", "unknown model 'no-such-model'"),
]


@pytest.mark.parametrize(("args", "field", "limit"), BAD_CALLS, ids=[c[1] + ":" + c[2] for c in BAD_CALLS])
async def test_bad_input_is_a_tool_error_naming_field_and_limit(app, args, field, limit):
    async with Client(app) as client:
        with pytest.raises(ToolError) as exc:
            await client.call_tool("rerank", args)
        message = str(exc.value)
        assert message.startswith(f"{field}: ") and limit in message and "\n" not in message, message
        # The server keeps serving on the same session.
        ok = await client.call_tool("rerank", {"query": "q", "documents": ["a", "b"]})
        assert len(ok.structured_content["results"]) == 2


async def test_unknown_model_error_lists_known_models(app):
    async with Client(app) as client:
        with pytest.raises(ToolError, match=r"Known: \['zero-shot'"):
            await client.call_tool("rerank", {"query": "q", "documents": ["a"], "model": "nope"})


async def test_internal_errors_are_masked_and_server_survives(app, services):
    loaded = services.reranker._get(services.reranker.default_model)

    def broken(pairs):
        raise RuntimeError("secret internal detail")

    original = loaded.batcher.fn
    loaded.batcher.fn = broken
    async with Client(app) as client:
        with pytest.raises(ToolError) as exc:
            await client.call_tool("rerank", {"query": "q", "documents": ["a"]})
        assert "secret" not in str(exc.value) and "rerank" in str(exc.value)
        loaded.batcher.fn = original
        ok = await client.call_tool("rerank", {"query": "q", "documents": ["a"]})
        assert ok.structured_content["results"][0]["index"] == 0


async def test_long_rerank_does_not_stall_other_calls(app, services):
    """Scoring runs off the event loop: list_models answers while a rerank is still scoring."""
    loaded = services.reranker._get(services.reranker.default_model)
    started, release = threading.Event(), threading.Event()
    original = loaded.batcher.fn

    def slow(pairs):
        started.set()
        assert release.wait(30), "never released"
        return original(pairs)

    loaded.batcher.fn = slow
    async with Client(app) as client:
        task = asyncio.create_task(client.call_tool("rerank", {"query": "q", "documents": ["a", "b"]}))
        assert await asyncio.to_thread(started.wait, 30)
        models = await asyncio.wait_for(client.call_tool("list_models", {}), timeout=20)
        assert not task.done()  # list_models came back while the rerank was still scoring
        assert models.structured_content["models"][0]["name"] == "zero-shot"
        release.set()
        res = await asyncio.wait_for(task, timeout=30)
    assert len(res.structured_content["results"]) == 2


async def test_list_models_tool_and_resources_show_store_models(app, services, tiny_cross_encoder):
    import shutil

    with services.store.writing(
        "med", {"backend": "cross-encoder", "base_model": "tiny", "metrics_after": {"ndcg@10": 0.8}}, version="v1"
    ) as d:
        shutil.copytree(tiny_cross_encoder, d, dirs_exist_ok=True)
    services.store.activate("med", "v1")
    async with Client(app) as client:
        listed = (await client.call_tool("list_models", {})).structured_content
        assert listed["default_model"] == services.settings.default_model
        med = next(m for m in listed["models"] if m["name"] == "med")
        assert med["version"] == "v1" and med["active"] and med["card"]["metrics_after"]["ndcg@10"] == 0.8

        uris = {str(r.uri) for r in await client.list_resources()}
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert "adaptrank://models" in uris and "adaptrank://models/{name}" in templates
        all_models = json.loads((await client.read_resource("adaptrank://models"))[0].text)
        assert [m["name"] for m in all_models["models"]] == ["zero-shot", "med"]
        card = json.loads((await client.read_resource("adaptrank://models/med"))[0].text)
        assert card["versions"] == ["v1"] and card["card"]["base_model"] == "tiny"
        with pytest.raises(Exception, match="unknown model 'ghost'"):
            await client.read_resource("adaptrank://models/ghost")

        # The store model reranks by name; the response names its version.
        res = await client.call_tool("rerank", {"query": "q", "documents": ["a", "b"], "model": "med"})
        assert (res.structured_content["model"], res.structured_content["version"]) == ("med", "v1")


def test_services_are_lazy_and_accept_prebuilt_members(app_settings):
    s = Services(app_settings)
    assert s.built() == {}
    create_app(services=s)
    assert set(s.built()) <= {"metrics"}  # building the app loads nothing (the metrics registry is only counters)
    assert s.reranker is s.reranker and s.reranker.store is s.store
    fake = object()
    assert Services(app_settings, reranker=fake).reranker is fake
    with pytest.raises(TypeError, match="no member 'nope'"):
        Services(app_settings, nope=1)
    with pytest.raises(ValueError, match="not both"):
        create_app(Settings(home=app_settings.home), services=s)
    s.close()
