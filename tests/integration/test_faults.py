"""Faults, each on a real server subprocess (issue 9): ``kill -9`` during ingest, generation,
fine-tuning and evaluation, then a restart; the job reports ``interrupted`` and ``resume_job``
finishes it with nothing lost or duplicated, and the model store never shows a half-written or
wrongly active version.

Tiny models built from a config and an OpenAI-compatible LLM stub stand in for the real ones (the
models are not what is under test), so each test takes seconds. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from llm_stub import LLMStub
from procs import AdaptrankServer, server_env
from toy_datasets import TOPICS as TOY_TOPICS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@dataclass
class World:
    home: Path
    root: Path
    env: dict[str, str]
    stub: LLMStub
    logs: Path
    starts: int = 0

    def start(self, **env: str) -> AdaptrankServer:
        self.starts += 1
        return AdaptrankServer({**self.env, **env}, self.logs / f"server-{self.starts}.log")


@pytest.fixture
def world(tmp_path, tiny_bi_encoder, tiny_cross_encoder):
    home, root = tmp_path / "home", tmp_path / "root"
    root.mkdir()
    shutil.copytree(tiny_bi_encoder, root / "bi")
    shutil.copytree(tiny_cross_encoder, root / "ce")
    with LLMStub() as stub:
        env = server_env(home, root, stub.url)
        yield World(home, root, env, stub, tmp_path)


async def tool(server: AdaptrankServer, name: str, args: dict[str, Any]) -> dict[str, Any]:
    async with server.client() as client:
        return (await client.call_tool(name, args)).structured_content


async def status(server: AdaptrankServer, job_id: str) -> dict[str, Any]:
    return await tool(server, "job_status", {"job_id": job_id})


async def kill_while_running(
    server: AdaptrankServer, job_id: str, min_done: float, timeout: float = 120
) -> dict | None:
    """Poll until the job is running with at least ``min_done`` progress, then ``kill -9``.

    Returns None when the job ended first (a fast machine): the caller retries with more work."""
    deadline = time.monotonic() + timeout
    while True:
        st = await status(server, job_id)
        done, total = st["progress"]["done"], st["progress"]["total"]
        if st["state"] == "running" and done >= min_done and (total is None or done < total):
            server.kill()
            return st
        if st["state"] == "succeeded":
            return None
        assert st["state"] in ("queued", "running"), f"the job ended before it could be killed: {st}"
        assert time.monotonic() < deadline, f"no progress to kill at within {timeout} s: {st}"
        await asyncio.sleep(0.05)


async def kill_mid_job(world: World, submit, attempts: int = 4) -> tuple[dict, dict]:
    """Start a server, submit a job of growing size (``submit(server, scale)`` returns the job and
    the progress to kill at) until one is killed mid-run; returns (job, status at the kill).

    Machines differ several-fold in speed; a job small enough for a slow one can finish on a fast one
    between two polls, so each retry makes the work four times bigger (bounded by ``attempts``)."""
    for attempt in range(attempts):
        server = world.start()
        try:
            job, min_done = await submit(server, 4**attempt)
            at_kill = await kill_while_running(server, job["id"], min_done)
        finally:
            server.stop()
        if at_kill is not None:
            return job, at_kill
    raise AssertionError(f"every job finished before it could be killed ({attempts} sizes tried)")


async def resume_after_restart(world: World, job_id: str, timeout: float = 300) -> dict[str, Any]:
    """Restart, check the job is ``interrupted``, resume it and wait until it ends."""
    server = world.start()
    try:
        st = await status(server, job_id)
        assert st["state"] == "interrupted", st
        await tool(server, "resume_job", {"job_id": job_id})
        deadline = time.monotonic() + timeout
        while True:
            st = await tool(server, "job_status", {"job_id": job_id, "wait_seconds": 5})
            if st["state"] not in ("queued", "running"):
                return {
                    "job": st,
                    "collections": await tool(server, "list_collections", {}),
                    "models": await tool(server, "list_models", {}),
                    "datasets": await tool(server, "list_datasets", {}),
                }
            assert time.monotonic() < deadline, f"resumed job did not finish within {timeout} s: {st}"
    finally:
        server.stop()


async def test_kill_during_ingest_then_resume(world):
    notes = world.root / "notes"
    notes.mkdir()
    n = 2000
    for i in range(n):  # one chunk each
        (notes / f"d{i:05d}.txt").write_text(f"Document {i} is about topic {i % 97} and item {i}.")
    server = world.start()
    job = (await tool(server, "ingest_documents", {"path": str(notes), "collection": "notes", "background": True}))[
        "job"
    ]
    at_kill = await kill_while_running(server, job["id"], min_done=64)
    assert at_kill is not None, "the ingest ended before it could be killed"
    out = await resume_after_restart(world, job["id"])
    assert out["job"]["state"] == "succeeded", out["job"]
    result = out["job"]["result"]
    print(f"\nkilled at {at_kill['progress']}; resumed: {result}")
    assert result["documents"] == n and result["collection_count"] == n  # nothing lost, nothing twice
    assert result["added"] + result["updated"] + result["unchanged"] == n
    # what was stored before the kill is kept, not embedded again
    assert result["unchanged"] >= at_kill["progress"]["done"] >= 64
    assert out["collections"]["collections"] == [{"name": "notes", "count": n}]


TOPICS = ["gout", "asthma", "anemia", "migraine", "eczema", "glaucoma", "psoriasis", "scurvy"]


def write_generation_corpus(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"doc{i:03d}.txt").write_text(
            f"{topic.title()} note {i}: {topic} causes symptom{i} and responds to remedy{i} in patients of group{i}."
        )


async def test_kill_during_generation_then_resume(world):
    corpus = world.root / "corpus"
    n = 48  # three checkpointed batches of 16 documents
    write_generation_corpus(corpus, n)
    world.stub.mode, world.stub.delay = "slow", 0.05
    server = world.start()
    job = await tool(
        server,
        "generate_training_data",
        {"source": "folder", "path": str(corpus), "output_name": "gen", "max_documents": n, "negatives": 3},
    )
    at_kill = await kill_while_running(server, job["id"], min_done=16)
    assert at_kill is not None, "the generation ended before it could be killed"
    checkpoint = world.home / "jobs" / job["id"] / "done.jsonl"
    finished_before = {json.loads(line)["doc_id"] for line in checkpoint.read_text().splitlines() if line.strip()}
    assert len(finished_before) >= 16
    world.stub.mode = "ok"
    requests_before = world.stub.requests
    out = await resume_after_restart(world, job["id"])
    assert out["job"]["state"] == "succeeded", out["job"]
    result = out["job"]["result"]
    print(
        f"\nkilled at {at_kill['progress']}; {len(finished_before)} documents checkpointed; resumed: {result['counts']}"
    )
    # nothing lost: every sampled document was processed once; nothing twice: no repeated group
    dataset = Path(result["path"])
    groups = [
        json.loads(line) for split in ("train", "dev") for line in (dataset / f"{split}.jsonl").read_text().splitlines()
    ]
    keys = [(g["doc_id"], g["query"]) for g in groups]
    assert len(keys) == len(set(keys)) == result["counts"]["groups"] > 0
    assert result["counts"]["documents"] + result["counts"].get("documents_without_groups", 0) == n
    # the checkpointed documents were not sent to the LLM again: fewer requests than a full run
    assert world.stub.requests - requests_before > 0
    assert {g["doc_id"] for g in groups} >= {d for d in finished_before if any(k[0] == d for k in keys)}
    assert [d["name"] for d in out["datasets"]["datasets"]] == ["gen"]  # one version, no half-written one


def write_toy_dataset(home: Path, name: str = "toy", copies: int = 1) -> None:
    """A dataset the tiny models can learn from (the fine-tuning unit tests' toy task), ``copies``
    times as many groups for a longer run."""
    import random

    from adaptrank.core.settings import Settings
    from adaptrank.training.dataset import DatasetStore, Group

    rng = random.Random(0)
    words = TOY_TOPICS[:16]
    passages = {(w, k): f"{w} {w} {w} notes {k} {w}" for w in words for k in range(3 * copies)}
    groups = []
    for (w, k), text in passages.items():
        negatives = rng.sample([v for (w2, _), v in passages.items() if w2 != w], 3)
        groups.append(Group(query=f"tell me about {w}", positive=text, negatives=negatives, doc_id=f"{w}-{k}"))
    DatasetStore(Settings(home=home)).write(name, groups, {"source": {"kind": "toy"}}, dev_fraction=0.25, seed=0)


async def test_kill_during_finetuning_then_resume(world):
    async def submit(server: AdaptrankServer, scale: int):
        write_toy_dataset(world.home, f"toy{scale}", copies=scale)
        args = {
            "dataset": f"toy{scale}",
            "base_model": str(world.root / "bi"),
            "method": "query-encoder",
            "epochs": 4,
            "group_size": 4,
            "output_name": f"tuned{scale}",
            "promote": True,
        }
        return await tool(server, "finetune_reranker", args), 2

    job, _ = await kill_mid_job(world, submit)
    name = job["params"]["output_name"]
    store = world.home / "models" / name
    # killed mid-training: no version, no ACTIVE pointer; a temp dir is never a version
    versions = [p.name for p in store.iterdir() if not p.name.startswith(".")] if store.exists() else []
    assert versions == [], versions
    out = await resume_after_restart(world, job["id"])
    assert out["job"]["state"] == "succeeded", out["job"]
    result = out["job"]["result"]
    tuned = [m for m in out["models"]["models"] if m["name"] == name]
    assert len(tuned) == 1 and tuned[0]["version"] == result["version"] and tuned[0]["active"]  # exactly one
    assert (store / "ACTIVE").read_text().strip() == result["version"]
    assert json.loads((store / result["version"] / "card.json").read_text())["dataset"].startswith(
        job["params"]["dataset"] + "@"
    )
    assert not [p for p in store.iterdir() if p.name.startswith(".tmp-")]  # the killed run's temp dir is gone


async def test_kill_during_evaluation_then_resume(world):
    models = [str(world.root / "ce"), f"bi-encoder:{world.root / 'bi'}"]

    async def submit(server: AdaptrankServer, scale: int):
        n = 300 * scale
        beir = world.root / f"beir{scale}"
        beir.mkdir()
        with open(beir / "corpus.jsonl", "w") as f:
            for i in range(n):
                f.write(
                    json.dumps({"_id": f"d{i}", "title": "", "text": f"passage {i} on {TOPICS[i % 8]} and item{i}"})
                    + "\n"
                )
        with open(beir / "queries.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({"_id": f"q{i}", "text": f"what about item{i} and {TOPICS[i % 8]}"}) + "\n")
        (beir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(n)))
        return await tool(server, "evaluate_reranker", {"path": str(beir), "models": models, "depth": 20}), 10

    job, _ = await kill_mid_job(world, submit)
    out = await resume_after_restart(world, job["id"])
    assert out["job"]["state"] == "succeeded", out["job"]
    result = out["job"]["result"]
    n = len((Path(job["params"]["path"]) / "queries.jsonl").read_text().splitlines())
    assert result["queries"] == n and [r["model"] for r in result["results"]] == ["bm25", *models]
    assert all(0 <= r["metrics"]["ndcg@10"] <= 1 for r in result["results"])


# -- a bad LLM endpoint ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("hang", "Timeout"),  # no answer: each request times out, then the job fails
        ("error", "Error code: 500"),  # every request answers 500: retried, then the job fails
        ("garbage", "Check the LLM"),  # answers that are no questions: nothing usable, the job says so
    ],
)
async def test_a_bad_llm_endpoint_fails_the_job_cleanly(tmp_path, tiny_bi_encoder, mode, expected):
    from fastmcp import Client

    from adaptrank.core.settings import Settings
    from adaptrank.server.app import create_app
    from adaptrank.server.context import Services

    corpus = tmp_path / "root" / "corpus"
    corpus.parent.mkdir()
    write_generation_corpus(corpus, 16)
    with LLMStub(mode=mode) as stub:
        settings = Settings(
            home=tmp_path / "home",
            allowed_roots=[corpus.parent],
            embedding_model=tiny_bi_encoder,
            default_model=f"bi-encoder:{tiny_bi_encoder}",
            llm_backend="openai",
            openai_base_url=stub.url,
            openai_timeout=1.0,
            openai_max_retries=1,
        )
        services = Services(settings)
        t0 = time.monotonic()
        try:
            async with Client(create_app(services=services)) as client:
                job = (
                    await client.call_tool(
                        "generate_training_data",
                        {"source": "folder", "path": str(corpus), "output_name": "gen", "max_documents": 16},
                    )
                ).structured_content
                while True:
                    st = (
                        await client.call_tool("job_status", {"job_id": job["id"], "wait_seconds": 2})
                    ).structured_content
                    # the server keeps serving while the LLM misbehaves
                    ok = await client.call_tool("rerank", {"query": "gout", "documents": ["uric acid", "tea"]})
                    assert len(ok.structured_content["results"]) == 2
                    if st["state"] not in ("queued", "running"):
                        break
                    assert time.monotonic() - t0 < 120, f"the job did not end: {st}"
                datasets = (await client.call_tool("list_datasets", {})).structured_content["datasets"]
        finally:
            services.close()
            stub.release.set()
    assert st["state"] == "failed" and expected in st["error"], st
    assert datasets == [] and not list((tmp_path / "home" / "datasets").glob("*/.tmp-*"))  # nothing half-written
    print(f"\n{mode}: failed after {time.monotonic() - t0:.1f} s: {st['error'][:160]}")


# -- a Chroma server that goes away mid-search --------------------------------------------------------
async def test_chroma_server_stopped_and_restarted_mid_search(tmp_path, tiny_bi_encoder):
    from fastmcp import Client
    from procs import ChromaServer

    from adaptrank.core.settings import Settings
    from adaptrank.server.app import create_app
    from adaptrank.server.context import Services

    notes = tmp_path / "root" / "notes"
    notes.mkdir(parents=True)
    for i, topic in enumerate(TOPICS):
        (notes / f"{topic}.md").write_text(f"# {topic.title()}\n\n{topic.title()} is condition number {i}.")
    chroma = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log")
    settings = Settings(
        home=tmp_path / "home",
        allowed_roots=[notes.parent],
        embedding_model=tiny_bi_encoder,
        default_model=f"bi-encoder:{tiny_bi_encoder}",
        chroma_url=chroma.url,
    )
    services = Services(settings)
    outcomes: list[str] = []
    try:
        async with Client(create_app(services=services)) as client:
            await client.call_tool("ingest_documents", {"path": str(notes), "collection": "notes"})
            stop = asyncio.Event()

            async def searching() -> None:  # one search after another, the whole time
                while not stop.is_set():
                    res = await asyncio.wait_for(
                        client.call_tool(
                            "search", {"question": "what is gout?", "collection": "notes"}, raise_on_error=False
                        ),
                        60,
                    )
                    text = res.content[0].text if res.is_error else ""
                    outcomes.append(
                        "ok"
                        if not res.is_error
                        else "clean"
                        if not text.startswith("Error calling") and ": " in text
                        else f"bad: {text}"
                    )
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(searching())
            await asyncio.sleep(1.0)
            chroma.stop()  # in the middle of the searches
            await asyncio.sleep(2.0)
            during = len(outcomes)
            rerank = await client.call_tool("rerank", {"query": "gout", "documents": ["a", "b"]})  # still serving
            chroma = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log", port=chroma.port)
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.wait_for(task, 90)
            after = (
                await client.call_tool("search", {"question": "what is gout?", "collection": "notes"})
            ).structured_content
    finally:
        services.close()
        chroma.stop()
    assert len(rerank.structured_content["results"]) == 2
    assert not [o for o in outcomes if o.startswith("bad")], [o for o in outcomes if o.startswith("bad")][:3]
    assert "clean" in outcomes[:during] and outcomes[-1] == "ok", outcomes  # failed while down, works again
    assert "gout" in after["results"][0]["text"].lower()
    print(f"\nsearches: {outcomes.count('ok')} ok, {outcomes.count('clean')} clean errors while Chroma was down")


# -- a full disk while saving -------------------------------------------------------------------------
def run_with_file_limit(code: str, limit: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose writes fail past ``limit`` bytes per file (RLIMIT_FSIZE: the
    kernel refuses the write with EFBIG, for Python and native writers alike)."""
    prelude = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_full_disk_while_saving_a_model_keeps_the_store_intact(world):
    from adaptrank.core.engine import Reranker
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.core.settings import Settings

    write_toy_dataset(world.home)
    store = ModelStore(world.home / "models")
    with store.writing("tuned", {"backend": "bi-encoder"}, version="v1") as d:  # the active, working model
        shutil.copytree(world.root / "bi", d, dirs_exist_ok=True)
    store.activate("tuned", "v1")
    child = run_with_file_limit(
        f"""
        from adaptrank.core.errors import AdaptRankError
        from adaptrank.core.settings import Settings
        from adaptrank.training.finetune import finetune, parse_params
        settings = Settings(home={str(world.home)!r})
        params = parse_params({{"dataset": "toy", "base_model": {str(world.root / "bi")!r}, "method": "bi-encoder",
                                "epochs": 1, "group_size": 4, "output_name": "tuned", "promote": True}})
        try:
            finetune(params, settings)
        except AdaptRankError as exc:
            print("ERROR", exc)
        """,
        limit=256 * 1024,
    )
    assert "ERROR could not save model 'tuned'" in child.stdout, child.stdout + child.stderr[-3000:]
    assert "File too large" in child.stdout and "the active model is unchanged" in child.stdout
    assert store.versions("tuned") == ["v1"] and store.active_version("tuned") == "v1"
    assert [p.name for p in (world.home / "models" / "tuned").iterdir() if p.name.startswith(".")] == []
    rr = Reranker("tuned", settings=Settings(home=world.home))
    assert rr.rerank("apple", ["apple apple", "river"]).version == "v1"  # still serves
    rr.close()


def test_full_disk_while_saving_a_dataset_leaves_no_version(world):
    from adaptrank.core.settings import Settings
    from adaptrank.training.dataset import DatasetStore

    write_toy_dataset(world.home)  # version 1, the latest
    before = DatasetStore(Settings(home=world.home)).get("toy")
    child = run_with_file_limit(
        f"""
        from adaptrank.core.errors import AdaptRankError
        from adaptrank.core.settings import Settings
        from adaptrank.training.dataset import DatasetStore, Group
        groups = [Group(query=f"q{{i}} " + "word " * 50, positive="p " * 200, negatives=["n " * 200] * 3, doc_id=f"d{{i}}")
                  for i in range(200)]
        try:
            DatasetStore(Settings(home={str(world.home)!r})).write("toy", groups, {{}})
        except AdaptRankError as exc:
            print("ERROR", exc)
        """,
        limit=64 * 1024,
    )
    assert "ERROR could not save dataset 'toy'" in child.stdout, child.stdout + child.stderr[-3000:]
    store = DatasetStore(Settings(home=world.home))
    assert store.versions("toy") == [before.version] and store.get("toy").version == before.version
    assert not list((world.home / "datasets" / "toy").glob(".tmp-*"))
