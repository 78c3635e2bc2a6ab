"""Issue 9, defects 2 and 3: what a request may name as a model, and one loaded copy per model.

A request (MCP tool, ``/v1/rerank``) may name ``zero-shot``, the default model, model-store models
and model folders inside the allowed roots; hub ids only when the operator allows them. A folder
outside the roots, a missing one and one that holds no loadable model all get the same error, so
a request cannot learn what exists on the server's disk. The CLI's own commands stay unrestricted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.engine import Reranker
from adaptrank.core.errors import NotFoundError
from adaptrank.core.modelspec import ModelAccess, canonical_target
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.http import serve_in_thread

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def layout(tmp_path, tiny_cross_encoder):
    """An allowed root holding a model, a folder with no model and a broken model; a model outside."""
    root = tmp_path / "root"
    shutil.copytree(tiny_cross_encoder, root / "good")
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"model_type": "bert", "nonsense": ')
    outside = tmp_path / "outside"
    shutil.copytree(tiny_cross_encoder, outside / "model")
    settings = Settings(home=tmp_path / "home", allowed_roots=[root], default_model="zero-shot", port=0)
    return settings, root, outside


def _same_error(messages: dict[str, str]) -> None:
    """Every refusal reads the same once the spec itself is taken out."""
    bodies = {m.replace(repr(spec), "<spec>") for spec, m in messages.items()}
    assert len(bodies) == 1, bodies


def refusal(settings: Settings, spec: str) -> str:
    with pytest.raises(NotFoundError) as exc:
        ModelAccess(settings, ModelStore(settings.models_dir)).check(spec)
    return str(exc.value)


def test_request_may_name_builtins_store_models_and_folders_inside_roots(layout, monkeypatch):
    settings, root, _outside = layout
    access = ModelAccess(settings, ModelStore(settings.models_dir))
    for spec in ["zero-shot", None, str(root / "good"), f"cross-encoder:{root}/good/", f"bi-encoder:{root}/good/."]:
        assert access.check(spec) == spec
    monkeypatch.chdir(root)
    assert access.check("good") == "good"  # relative, but inside a root


def test_folders_outside_roots_missing_or_invalid_all_get_one_error(layout, monkeypatch):
    settings, root, outside = layout
    monkeypatch.chdir(outside)  # relative paths are what the probe used
    specs = [
        "model",  # relative, exists outside the roots
        str(outside / "model"),
        f"cross-encoder:{outside / 'model'}",
        "../outside/model",
        "no-such-folder/x",  # looks like a hub id; hub ids are off
        str(outside / "missing"),
        str(root / "empty"),  # inside, exists, not a model
        str(root / "missing"),
        "/etc",
        "a\0b",
    ]
    messages = {s: refusal(settings, s) for s in specs}
    _same_error(messages)
    assert "unknown model" in messages["model"] and "ADAPTRANK_ALLOW_HUB_MODELS" in messages["model"]


def test_hub_ids_only_when_the_operator_allows_them(layout, monkeypatch, tmp_path):
    settings, _, outside = layout
    assert "hub ids are off" in refusal(settings, "cross-encoder/ms-marco-MiniLM-L6-v2")
    allowed = settings.model_copy(update={"allow_hub_models": True})
    access = ModelAccess(allowed, ModelStore(allowed.models_dir))
    assert access.check("cross-encoder/ms-marco-MiniLM-L6-v2") == "cross-encoder/ms-marco-MiniLM-L6-v2"
    # A local folder spelled like a hub id is a path, and must be inside the roots.
    monkeypatch.chdir(outside.parent)
    with pytest.raises(NotFoundError):
        access.check("outside/model")


async def test_rerank_tool_refuses_alike_and_loads_nothing(layout, monkeypatch):
    settings, root, outside = layout
    services = Services(settings)
    monkeypatch.chdir(outside)
    async with Client(create_app(services=services)) as client:
        messages = {}
        for spec in ["model", "missing", str(root / "empty"), str(root / "broken")]:
            with pytest.raises(ToolError) as exc:
                await client.call_tool("rerank", {"query": "q", "documents": ["a"], "model": spec})
            messages[spec] = str(exc.value)
        _same_error(messages)
        assert messages["model"].startswith("model: unknown model")
        ok = await client.call_tool("rerank", {"query": "q", "documents": ["a", "b"], "model": str(root / "good")})
        assert len(ok.structured_content["results"]) == 2
    assert not any(str(outside) in key for key in services.reranker._loaded)
    services.close()


def test_cohere_route_refuses_alike_with_404(layout, monkeypatch):
    settings, root, outside = layout
    services = Services(settings)
    monkeypatch.chdir(outside)
    with (
        serve_in_thread(create_app(services=services), settings, timeout=30) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        bodies = {}
        for spec in ["model", "missing", str(root / "broken"), "org/hub-model"]:
            r = http.post("/v1/rerank", json={"query": "q", "documents": ["a"], "model": spec})
            assert r.status_code == 404 and r.json()["field"] == "model", r.text
            bodies[spec] = r.json()["message"]
        _same_error(bodies)
        assert (
            http.post("/v1/rerank", json={"query": "q", "documents": ["a"], "model": str(root / "good")}).status_code
            == 200
        )
    services.close()


async def test_training_tools_apply_the_same_rule(layout, monkeypatch):
    settings, root, outside = layout
    services = Services(settings)
    monkeypatch.chdir(outside)
    beir = root / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "gout"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "gout?"}\n')
    (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    calls = [
        ("evaluate_reranker", {"path": str(beir), "models": ["zero-shot", "model"]}, "models[1]: unknown model"),
        ("finetune_reranker", {"dataset": "toy", "base_model": "model"}, "base_model: unknown model"),
        ("finetune_reranker", {"dataset": "toy", "base_model": str(outside / "model")}, "base_model: unknown model"),
        (
            "generate_training_data",
            {"source": "beir", "path": str(beir), "output_name": "x", "llm_model": "model"},
            "llm_model: unknown model",
        ),
        (
            "generate_training_data",
            {"source": "beir", "path": str(beir), "output_name": "x", "llm_model": "org/llm"},
            "llm_model: unknown model",
        ),
    ]
    async with Client(create_app(services=services)) as client:
        for tool, args, message in calls:
            with pytest.raises(ToolError, match=message.replace("[", r"\[").replace("]", r"\]")):
                await client.call_tool(tool, args)
    assert services.jobs.list() == []  # nothing started
    services.close()


def test_openai_llm_model_names_a_served_model_not_a_file(layout):
    settings, _, _ = layout
    access = ModelAccess(settings, ModelStore(settings.models_dir))
    assert access.check_llm("openai", "qwen2.5:7b") == "qwen2.5:7b"
    with pytest.raises(NotFoundError, match="llm_model: unknown model '/etc'"):
        access.check_llm("transformers", "/etc")


def test_cli_serve_builds_a_restricted_app_and_cli_rerank_is_not(layout, monkeypatch, tiny_cross_encoder):
    from typer.testing import CliRunner

    from adaptrank.server.cli import app as cli

    settings, _, outside = layout
    mcp = create_app(settings)  # what `adaptrank serve` builds
    with pytest.raises(NotFoundError):
        mcp.services.reranker.rerank("q", ["a"], model=str(outside / "model"))
    monkeypatch.setenv("ADAPTRANK_HOME", str(settings.home))
    result = CliRunner().invoke(cli, ["rerank", "q", "a", "b", "--json", "-m", str(outside / "model")])
    assert result.exit_code == 0, result.output
    mcp.services.close()


# -- defect 3: one copy per model, a bounded cache ---------------------------------------------------
def test_spellings_of_one_path_share_one_loaded_model(settings, tiny_bi_encoder):
    rr = Reranker("zero-shot", settings=settings)
    spellings = [
        f"bi-encoder:{tiny_bi_encoder}",
        f"bi-encoder:{tiny_bi_encoder}/",
        f"bi-encoder:{tiny_bi_encoder}//",
        f"bi-encoder:{tiny_bi_encoder}/.",
        f"bi-encoder:{tiny_bi_encoder}/../{Path(tiny_bi_encoder).name}",
    ]
    names = {rr.rerank("q", ["a", "b"], model=s).model for s in spellings}
    assert len(rr._loaded) == 1
    assert names == {f"bi-encoder:{canonical_target(tiny_bi_encoder)}"}
    link = Path(settings.home) / "link"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tiny_bi_encoder, link)
    rr.rerank("q", ["a"], model=f"bi-encoder:{link}")
    assert len(rr._loaded) == 1  # a symlink to the same folder is the same model
    rr.close()


def test_loaded_models_are_bounded_and_the_default_is_pinned(tmp_path, make_tiny_bert):
    paths = [make_tiny_bert(seed=i) for i in range(5)]
    s = Settings(home=tmp_path / "home", max_loaded_models=2, cache_size=0)
    rr = Reranker(f"cross-encoder:{paths[0]}", settings=s)
    rr.rerank("q", ["a"])
    for p in paths[1:]:
        rr.rerank("q", ["a"], model=f"cross-encoder:{p}")
        assert len(rr._loaded) <= 2
        assert any(x.pinned and x.resolved.path == paths[0] for x in rr._loaded.values())
    # an evicted model loads again on demand
    assert rr.rerank("q", ["a"], model=f"cross-encoder:{paths[1]}").results[0].index == 0
    rr.close()


def test_a_promotion_replaces_the_old_version_in_memory(tmp_path, tiny_cross_encoder, monkeypatch):
    import gc

    import adaptrank.core.engine.memory as memory

    released = []
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(True))
    s = Settings(home=tmp_path / "home", cache_size=0)
    store = ModelStore(s.models_dir)
    for version in ("v1", "v2"):
        with store.writing("med", {"backend": "cross-encoder"}, version=version) as d:
            shutil.copytree(tiny_cross_encoder, d, dirs_exist_ok=True)
    store.activate("med", "v1")
    rr = Reranker("med", settings=s, store=store)
    assert rr.rerank("q", ["a"]).version == "v1"
    store.activate("med", "v2")
    assert rr.rerank("q", ["a"]).version == "v2"
    assert [x.resolved.version for x in rr._loaded.values()] == ["v2"]
    gc.collect()
    assert released == [True]  # v1's memory was handed back once v1 was gone
    rr.close()
