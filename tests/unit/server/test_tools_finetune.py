"""finetune_reranker / evaluate_reranker through the real MCP protocol (in-memory client), a cancel
in the middle of training that leaves the store as it was, and the CLI commands."""

from __future__ import annotations

import json
import threading

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.server.jobs import JobManager

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("tiny_zero_shot")]  # zero-shot = the tiny bi-encoder

FAST = dict(dataset="toy", output_name="toy-rr", group_size=4, epochs=2)


@pytest.fixture
def app_settings(settings, tmp_path, tiny_zero_shot):
    from pathlib import Path

    return Settings(home=settings.home, allowed_roots=[tmp_path, Path(tiny_zero_shot).parent], microbatch_wait_ms=5.0)


@pytest.fixture
def services(app_settings):
    s = Services(app_settings, jobs=JobManager(app_settings))
    yield s
    s.close()


async def test_finetune_job_reports_progress_and_promotes(services, make_dataset, tiny_zero_shot):
    make_dataset()
    async with Client(create_app(services=services)) as client:
        names = {t.name for t in await client.list_tools()}
        assert {"finetune_reranker", "evaluate_reranker"} <= names
        job = (
            await client.call_tool("finetune_reranker", {**FAST, "base_model": tiny_zero_shot, "learning_rate": 3e-3})
        ).structured_content
        assert job["kind"] == "finetune" and job["state"] in ("queued", "running")
        seen = []

        async def on_progress(progress, total, message):
            seen.append(message)

        done = (
            await client.call_tool(
                "job_status", {"job_id": job["id"], "wait_seconds": 50}, progress_handler=on_progress
            )
        ).structured_content
        while done["state"] in ("queued", "running"):
            done = (await client.call_tool("job_status", {"job_id": job["id"], "wait_seconds": 50})).structured_content
        assert done["state"] == "succeeded", done["error"]
        r = done["result"]
        assert r["name"] == "toy-rr" and r["method"] == "query-encoder" and r["metrics_after"]["dev_mrr@10"] > 0
        assert any("loss" in (m or "") for m in seen) and any("dev mrr@10" in (m or "") for m in seen)
        store = ModelStore(services.settings.models_dir)
        assert store.get("toy-rr", r["version"]).card.hyperparameters["epochs"] == 2


async def test_bad_input_is_a_tool_error_and_starts_no_job(services, make_dataset):
    make_dataset(n_negatives=3)
    async with Client(create_app(services=services)) as client:
        with pytest.raises(ToolError, match="^dataset: 'nope' does not exist"):
            await client.call_tool("finetune_reranker", {"dataset": "nope"})
        with pytest.raises(ToolError, match=r"group_size: is 8.*max 3"):
            await client.call_tool("finetune_reranker", {"dataset": "toy"})
        with pytest.raises(ToolError, match="base_model: unknown model"):
            await client.call_tool("finetune_reranker", {"dataset": "toy", "group_size": 4, "base_model": "nope"})
        with pytest.raises(ToolError, match="outside the allowed roots"):
            await client.call_tool("evaluate_reranker", {"path": "/etc"})
        with pytest.raises(ToolError):
            await client.call_tool("finetune_reranker", {"dataset": "toy", "group_size": 1})
    assert services.jobs.list() == []


def test_cancel_mid_training_leaves_the_store_as_it_was(app_settings, make_dataset, tiny_zero_shot):
    from adaptrank.server.jobs.kinds import finetune_job

    make_dataset()
    store = ModelStore(app_settings.models_dir)
    jobs = JobManager(app_settings)
    first = jobs.wait(jobs.submit("finetune", {**FAST, "epochs": 1, "promote": True}).id, timeout=240)
    assert first.state.value == "succeeded", first.error
    before = sorted(p.name for p in (app_settings.models_dir / "toy-rr").iterdir())
    active = store.active_version("toy-rr")

    training = threading.Event()

    def slow_job(handle):
        real = handle.progress

        def progress(done, total=None, message=None):
            if message and message.startswith("step"):
                training.set()
                handle._cancel.wait(30)  # hold training until the cancel arrives
            real(done, total, message)

        handle.progress = progress
        return finetune_job(handle)

    info = jobs.submit("finetune", {**FAST, "epochs": 5}, fn=slow_job)
    assert training.wait(240), "training never started"
    jobs.cancel(info.id)
    end = jobs.wait(info.id, timeout=120)
    jobs.close(wait=True)
    assert end.state.value == "cancelled", end.error
    assert sorted(p.name for p in (app_settings.models_dir / "toy-rr").iterdir()) == before
    assert store.active_version("toy-rr") == active


async def test_evaluate_reranker_job(services, tmp_path):
    beir = _toy_beir(tmp_path / "beir")
    async with Client(create_app(services=services)) as client:
        job = (
            await client.call_tool("evaluate_reranker", {"path": str(beir), "models": ["zero-shot"], "depth": 5})
        ).structured_content
        done = (await client.call_tool("job_status", {"job_id": job["id"], "wait_seconds": 50})).structured_content
        assert done["state"] == "succeeded", done["error"]
        rows = {r["model"]: r["metrics"] for r in done["result"]["results"]}
        assert set(rows) == {"bm25", "zero-shot"} and rows["bm25"]["queries"] == 4
        assert 0 < rows["bm25"]["mrr@10"] <= 1 and 0 < rows["zero-shot"]["mrr@10"] <= 1


def _toy_beir(folder):
    folder.mkdir(parents=True)
    docs = {
        "d1": "Gout is caused by uric acid crystals.",
        "d2": "Flu symptoms include fever and cough.",
        "d3": "Paris is the capital of France.",
        "d4": "Treatment of gout includes rest and medication.",
        "d5": "Rivers flow to the sea.",
    }
    qs = {
        "q1": ("what causes gout", "d1"),
        "q2": ("symptoms of flu", "d2"),
        "q3": ("capital of france", "d3"),
        "q4": ("how is gout treated", "d4"),
    }
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v[0]}) + "\n" for k, v in qs.items()))
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{k}\t{v[1]}\t1\n" for k, v in qs.items())
    )
    return folder


def test_cli_finetune_and_eval(app_settings, make_dataset, tiny_zero_shot, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from adaptrank.server.cli import app

    monkeypatch.setenv("ADAPTRANK_HOME", str(app_settings.home))
    make_dataset()
    runner = CliRunner()
    res = runner.invoke(app, ["finetune", "toy", "-o", "toy-rr", "-g", "4", "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["name"] == "toy-rr" and out["version"] and "dev_mrr@10" in out["metrics_after"]
    beir = _toy_beir(tmp_path / "beir")
    res = runner.invoke(
        app,
        [
            "eval",
            str(beir),
            "-m",
            "zero-shot",
            "-m",
            f"toy-rr@{out['version']}",
            "--depth",
            "5",
            "--json",
            "--report",
            str(tmp_path / "report.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [r["model"] for r in json.loads(res.stdout)["results"]]
    assert rows == ["bm25", "zero-shot", f"toy-rr@{out['version']}"]
    page = (tmp_path / "report.html").read_text()  # the store model's training curve from its card
    assert f" vs toy-rr@{out['version']}</h2>" in page and "dev evaluations from the model card" in page
    res = runner.invoke(app, ["finetune", "toy", "-g", "9"])
    assert res.exit_code == 2 and "group_size" in res.output
