"""Head-of-line blocking on ``POST /v1/rerank`` (issue 9, defect 6): how long a small request waits
while one huge request is being scored, with the micro-batcher's token-budget interleaving and
without it, in one run.

Starts ``adaptrank serve --transport http`` on 127.0.0.1 twice with the offline MiniLM bi-encoder
(``zero-shot``, score cache off): once with the default ``ADAPTRANK_MICROBATCH_TOKENS`` (16384: a
huge request is scored over many passes, and a small request joins the next one) and once with
``ADAPTRANK_MICROBATCH_TOKENS=1000000000`` (one pass per request, the old behaviour). One client
sends a huge request (``--huge-docs`` medquad-dev passages of ``--huge-chars`` characters); once it
is running, another client sends 2-passage requests one after another until the huge one returns.
Prints the small requests' latency (p50, max) and the huge request's time for each mode.

    HF_HUB_OFFLINE=1 python bench/head_of_line.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import httpx
import numpy as np
from _medquad import DATA  # where medquad-dev lies: one place for every bench
from procs import AdaptrankServer


async def run_mode(name: str, env: dict[str, str], huge: dict, logs: Path) -> dict:
    server = AdaptrankServer(env, logs / f"hol-{name}.log", timeout=300)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
            await http.post("/v1/rerank", json={"query": "warm up", "documents": ["a", "b"]})
            t0 = time.perf_counter()
            big = asyncio.create_task(http.post("/v1/rerank", json=huge))
            await asyncio.sleep(1.0)  # the huge request is being scored
            small: list[float] = []
            while not big.done():
                t = time.perf_counter()
                r = await http.post(
                    "/v1/rerank",
                    json={
                        "query": "what causes gout?",
                        "documents": ["Gout is caused by uric acid.", "Tea is a drink."],
                    },
                )
                r.raise_for_status()
                small.append(time.perf_counter() - t)
            r = await big
            r.raise_for_status()
            return {"huge_seconds": time.perf_counter() - t0, "small": small}
    finally:
        server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--huge-docs", type=int, default=400)
    ap.add_argument("--huge-chars", type=int, default=1000)
    args = ap.parse_args()
    docs = []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            if len(text) >= args.huge_chars:
                docs.append(text[: args.huge_chars])
            if len(docs) == args.huge_docs:
                break
    huge = {"query": "What are the symptoms of gout?", "documents": docs}
    with tempfile.TemporaryDirectory(prefix="adaptrank-hol-") as tmp:
        base = {"ADAPTRANK_HOME": str(Path(tmp) / "home"), "ADAPTRANK_CACHE_SIZE": "0"}
        results = {}
        for name, extra in (("interleaved", {}), ("one pass", {"ADAPTRANK_MICROBATCH_TOKENS": "1000000000"})):
            results[name] = await run_mode(name, {**base, **extra}, huge, Path(tmp))
    chars = sum(len(d) for d in docs)
    print(
        f"\nhead-of-line: one request of {len(docs)} passages ({chars} characters) and 2-passage requests meanwhile; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for name, r in results.items():
        s = np.array(r["small"]) * 1000
        print(
            f"  {name:11s}  huge request {r['huge_seconds']:6.1f} s; {len(s):3d} small requests meanwhile: "
            f"p50 {np.percentile(s, 50):7.0f} ms, max {s.max():7.0f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
