"""Several replicas on one store (issue 12): two real ``adaptrank serve`` processes on 127.0.0.1 share
one ``ADAPTRANK_HOME``.

- A promotion made through one replica is served by the other on its very next request (the engine
  reads the model's active version on every request).
- A job running on replica A stays ``running`` for B (B's start does not touch it, A's lease is
  renewed); after ``kill -9`` of A, B reports it ``interrupted`` once A's lease ran out, resumes it
  once, it completes, and a second resume is refused.

Tiny models and an OpenAI-compatible LLM stub stand in for the real ones; the lease is 3 s. Every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from llm_stub import LLMStub
from procs import AdaptrankServer, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LEASE = 3.0
TOPICS = ["gout", "asthma", "anemia", "migraine", "eczema", "glaucoma", "psoriasis", "scurvy"]


async def call(server: AdaptrankServer, name: str, args: dict[str, Any]) -> Any:
    async with server.client() as client:
        return await client.call_tool(name, args, raise_on_error=False)


async def tool(server: AdaptrankServer, name: str, args: dict[str, Any]) -> dict[str, Any]:
    res = await call(server, name, args)
    assert not res.is_error, f"{name}: {res.content[0].text}"
    return res.structured_content


async def status(server: AdaptrankServer, job_id: str) -> dict[str, Any]:
    return await tool(server, "job_status", {"job_id": job_id})


async def until_finished(server: AdaptrankServer, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await tool(server, "job_status", {"job_id": job_id, "wait_seconds": 2})
        if st["state"] not in ("queued", "running"):
            return st
        assert time.monotonic() < deadline, f"job did not finish within {timeout} s: {st}"


def write_corpus(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"doc{i:03d}.txt").write_text(
            f"{topic.title()} note {i}: {topic} causes symptom{i} and responds to remedy{i} in patients of group{i}."
        )


def write_toy_dataset(home: Path) -> None:
    from adaptrank.core.settings import Settings
    from adaptrank.training.dataset import DatasetStore, Group

    rng = random.Random(0)
    words = ["apple", "river", "engine", "violin", "glacier", "tomato", "saturn", "copper"]
    passages = {(w, k): f"{w} {w} {w} notes {k} {w}" for w in words for k in range(3)}
    groups = [
        Group(
            query=f"tell me about {w}",
            positive=text,
            negatives=rng.sample([v for (w2, _), v in passages.items() if w2 != w], 3),
            doc_id=f"{w}-{k}",
        )
        for (w, k), text in passages.items()
    ]
    DatasetStore(Settings(home=home)).write("toy", groups, {"source": {"kind": "toy"}}, dev_fraction=0.25, seed=0)


async def test_two_replicas_share_promotions_and_take_over_a_dead_replicas_job(tmp_path, tiny_bi_encoder):
    from adaptrank.core.modelstore import ModelStore

    t_start = time.monotonic()
    home, root = tmp_path / "home", tmp_path / "root"
    root.mkdir()
    shutil.copytree(tiny_bi_encoder, root / "bi")
    corpus = root / "corpus"
    write_corpus(corpus, 48)
    write_toy_dataset(home)
    store = ModelStore(home / "models")  # version v1 of "tuned", active, before any server starts
    with store.writing("tuned", {"backend": "bi-encoder"}, version="v1") as d:
        shutil.copytree(root / "bi", d, dirs_exist_ok=True)
    store.activate("tuned", "v1")

    with LLMStub(mode="slow", delay=1.0) as stub:  # A's generation job runs for as long as the test needs
        env = server_env(home, root, stub.url, ADAPTRANK_JOB_LEASE_SECONDS=str(LEASE))
        a = AdaptrankServer(env, tmp_path / "a.log")
        b = None
        try:
            # -- a job on A, then B starts: B leaves A's running job alone ---------------------------
            job = await tool(
                a,
                "generate_training_data",
                {"source": "folder", "path": str(corpus), "output_name": "gen", "max_documents": 48, "negatives": 3},
            )
            deadline = time.monotonic() + 30
            while (st := await status(a, job["id"]))["state"] != "running":
                assert st["state"] == "queued" and time.monotonic() < deadline, st
            a_owner = st["owner"]
            assert a_owner.endswith(f":{a.pid}")
            b = AdaptrankServer(env, tmp_path / "b.log")
            b_started = time.monotonic()
            st = await status(b, job["id"])
            assert st["state"] == "running" and st["owner"] == a_owner, st

            # -- a promotion through B is served by A on its next request (and by B) ------------------
            before = await tool(
                a, "rerank", {"query": "apple", "documents": ["apple apple", "river"], "model": "tuned"}
            )
            assert before["version"] == "v1"  # A has v1 loaded now
            tune = await tool(
                b,
                "finetune_reranker",
                {
                    "dataset": "toy",
                    "base_model": str(root / "bi"),
                    "method": "query-encoder",
                    "epochs": 1,
                    "group_size": 4,
                    "output_name": "tuned",
                    "promote": True,
                },
            )
            tuned = await until_finished(b, tune["id"])
            assert tuned["state"] == "succeeded", tuned
            v2 = tuned["result"]["version"]
            assert v2 != "v1" and store.active_version("tuned") == v2
            after_a = await tool(
                a, "rerank", {"query": "apple", "documents": ["apple apple", "river"], "model": "tuned"}
            )
            after_b = await tool(
                b, "rerank", {"query": "apple", "documents": ["apple apple", "river"], "model": "tuned"}
            )
            assert after_a["version"] == after_b["version"] == v2, (after_a, after_b)

            # -- A's job stayed running for B the whole time: at least two leases went by --------------
            while time.monotonic() - b_started < 2 * LEASE:
                st = await status(b, job["id"])
                assert st["state"] == "running" and st["owner"] == a_owner, st
                await asyncio.sleep(0.5)
            st = await status(b, job["id"])
            assert st["state"] == "running" and st["lease_until"] > time.time(), st

            # -- kill -9 A: B reports the job interrupted once A's lease ran out ----------------------
            a.kill()
            killed = time.monotonic()
            stub.mode = "ok"  # the resumed run needs no slow LLM
            while (st := await status(b, job["id"]))["state"] == "running":
                assert time.monotonic() - killed < LEASE + 10, (
                    f"still running {time.monotonic() - killed:.1f} s after the kill"
                )
                await asyncio.sleep(0.2)
            took = time.monotonic() - killed
            assert st["state"] == "interrupted" and f"{a_owner} stopped renewing its lease" in st["error"], st

            # -- resume once on B; it completes; a second resume is refused ---------------------------
            resumed = await tool(b, "resume_job", {"job_id": job["id"]})
            assert resumed["owner"] != a_owner and resumed["state"] in ("queued", "running", "succeeded")
            again = await call(b, "resume_job", {"job_id": job["id"]})
            assert again.is_error
            text = again.content[0].text
            assert (
                f"job {job['id']} is already being resumed by {resumed['owner']}" in text
                or "is succeeded; only" in text
            ), text
            done = await until_finished(b, job["id"])
            assert done["state"] == "succeeded" and done["attempts"] == 2, done
            assert done["result"]["counts"]["groups"] > 0
            last = await call(b, "resume_job", {"job_id": job["id"]})
            assert last.is_error and f"job {job['id']} is succeeded; only" in last.content[0].text
            print(
                f"\ninterrupted {took:.1f} s after kill -9 (lease {LEASE} s); test took {time.monotonic() - t_start:.0f} s"
            )
        finally:
            a.kill()
            if b is not None:
                b.stop()
            stub.mode = "ok"
