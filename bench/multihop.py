"""Multi-hop retrieval: does decomposition find both halves of a two-part question?

From medquad-dev, each question joins two real questions about different conditions
("What causes X, and how is Y treated?" built from the real question texts of two focus titles);
the answers of both are the positives. Over the full corpus in Chroma (ingested once and cached
under ``--home``), with the SAME candidate budget (``--budget``, default 40 passages):

  (a) single      — retrieve ``budget`` passages for the whole question, rerank against it;
  (b) decompose   — split the question (rules, or the embedded LLM with ``--llm``, batched),
                    retrieve ``budget // n_queries`` per query, merge, rerank.
                    ``+orig`` also retrieves with the whole question (the agent's default: 3 x 13);
                    ``subs`` retrieves with the sub-questions only (2 x 20).
                    Rerank ``original``: the pool ranked by the engine against the whole question
                    (the paper); ``fusion`` (the agent's default): also against each sub-question,
                    rankings fused by RRF. Every row names its mode explicitly.

Ranking is per chunk; a document's rank is its best chunk's. Printed per method: how often BOTH
answers are in the top 10 (and the ratio to (a); target >= 1.2), Recall@10 of the answers, MRR@10
of each answer (first/second half), whether both were in the reranked pool, and latency per stage.

Then ``search`` as the MCP tool runs it (k=20, rules, fusion; the retriever queries with the
model's own query tower when it made the stored vectors, and the pool is reranked from them):
latency p50/p95 per stage over ``--latency-n`` questions (target: p50 <= 150 ms on a CPU), and
first-stage Recall@k of single real questions with the store's query tower vs an adapted one
(``--adapted NAME --models-home HOME``: a model ``adaptrank adapt`` wrote, e.g. by
``bench/self_adapt.py``).

    python bench/multihop.py                      # 150 questions, rule-based decomposition
    python bench/multihop.py --llm                # also the embedded LLM's decomposition
    python bench/multihop.py --n 30 --model zero-shot
    python bench/multihop.py --n 0 --adapted ghr-reranker --models-home H/GHR --recall-collection GHR
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line
from _medquad import DATA, ingest_medquad


def build_questions(data, n: int, seed: int) -> list[dict]:
    """Pairs of real questions about two different focus titles, joined into one question."""
    rng = random.Random(seed)
    by_q = []
    for qid, text in data.queries.items():
        rels = {d for d, g in data.qrels.get(qid, {}).items() if g > 0}
        if not rels:
            continue
        title = data.corpus[next(iter(rels))]["title"]
        by_q.append((qid, text, rels, title, data.query_meta.get(qid, {}).get("qtype", "")))
    by_q.sort()
    out, used = [], set()
    while len(out) < n:
        a, b = rng.sample(by_q, 2)
        if a[3] == b[3] or a[0] in used or b[0] in used:
            continue
        used.update((a[0], b[0]))
        first = a[1].strip().rstrip("?").strip()
        second = b[1].strip().rstrip("?").strip()
        second = second[0].lower() + second[1:]
        out.append(
            {
                "question": f"{first}, and {second}?",
                "parts": [a[1], b[1]],
                "answers": [a[2], b[2]],
                "titles": [a[3], b[3]],
                "qtypes": [a[4], b[4]],
            }
        )
    return out


def doc_ranking(result) -> list[str]:
    seen: dict[str, None] = {}
    for p in result.results:
        seen.setdefault(str(p.metadata.get("doc_id", p.id.rsplit("#", 1)[0])), None)
    return list(seen)


def rank_of(ranking: list[str], answers: set[str]) -> int | None:
    for r, d in enumerate(ranking, 1):
        if d in answers:
            return r
    return None


async def run_method(agent, retriever, qs, budget, decs=None, **kw) -> dict:
    """Run one method over the questions; ``decs``: precomputed (batched) LLM decompositions."""
    stats = {
        "both": 0,
        "recall": [],
        "mrr1": [],
        "mrr2": [],
        "pool_both": 0,
        "stages": {},
        "total": [],
        "fallback": 0,
        "n_queries": [],
    }
    for n, q in enumerate(qs):
        extra = dict(kw)
        if decs is not None:
            extra["sub_questions"] = decs[n].sub_questions
            stats["fallback"] += decs[n].method != "llm"
        res = await agent.arun(q["question"], retriever, top_n=budget, pool_budget=budget, **extra)
        ranking = doc_ranking(res)
        r1, r2 = rank_of(ranking, q["answers"][0]), rank_of(ranking, q["answers"][1])
        in10 = [r is not None and r <= 10 for r in (r1, r2)]
        stats["both"] += all(in10)
        stats["recall"].append(sum(in10) / 2)
        stats["mrr1"].append(1 / r1 if r1 and r1 <= 10 else 0.0)
        stats["mrr2"].append(1 / r2 if r2 and r2 <= 10 else 0.0)
        stats["pool_both"] += r1 is not None and r2 is not None
        stats["n_queries"].append(len(res.queries))
        for s in res.trace.stages:
            stats["stages"].setdefault(s.name, []).append(s.seconds)
        stats["total"].append(res.trace.total_seconds)
    return stats


def fmt_ms(xs: list[float]) -> str:
    return f"{1000 * statistics.mean(xs):7.1f}" if xs else "      -"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


async def search_latency(agent, retriever, questions: list[str], model: str | None) -> dict:
    """``search`` as the MCP tool runs it (k=20, rules, fusion): seconds per stage and in total."""
    out: dict = {"total": [], "stages": {}, "passages": set(), "tower": set()}
    for q in questions:
        res = await agent.arun(q, retriever, k=20, top_n=10, model=model)
        out["total"].append(res.trace.total_seconds)
        for s in res.trace.stages:
            out["stages"].setdefault(s.name, []).append(s.seconds)
            if s.name == "rerank":
                out["passages"].add(s.detail.get("passages"))
            if s.name == "retrieve":
                out["tower"].add(s.detail.get("query_tower"))
    return out


def first_stage_recall(retriever, data, qids: list[str], ks: tuple[int, ...]) -> dict[int, float]:
    """Recall@k of single real questions' answers in dense retrieval (a document counts once)."""
    hits = retriever.retrieve([data.queries[q] for q in qids], max(ks) * 3)
    out = {}
    for k in ks:
        got = 0.0
        for q, row in zip(qids, hits, strict=True):
            docs = list(dict.fromkeys(str(h.metadata.get("doc_id", h.id.rsplit("#", 1)[0])) for h in row))[:k]
            rel = {d for d, g in data.qrels[q].items() if g > 0}
            got += len(rel & set(docs)) / len(rel)
        out[k] = got / len(qids)
    return out


def latency_and_recall(args, store, data, settings) -> None:
    from adaptrank.agents.agent import AgentConfig, DecompositionAgent
    from adaptrank.agents.retrieval import ChromaRetriever
    from adaptrank.core.engine import Reranker
    from adaptrank.core.modelstore import ModelStore

    models_root = Path(args.models_home) / "models" if args.models_home else settings.models_dir
    reranker = Reranker(settings=settings, store=ModelStore(models_root))
    agent = DecompositionAgent(reranker, None, AgentConfig(max_subquestions=2))
    specs = [("zero-shot", "zero-shot")] + ([(args.adapted, args.adapted)] if args.adapted else [])
    rng = random.Random(args.seed)
    two_part = [q["question"] for q in build_questions(data, args.latency_n, args.seed + 1)]
    print(f"\nsearch latency (k=20, rule decomposition, fusion rerank; {len(two_part)} two-part questions, warm):")
    print(
        f"  {'model':28s} {'p50 ms':>7s} {'p95 ms':>7s}  p50 per stage (ms)                          query tower  rerank from"
    )
    for label, spec in specs:
        retriever = ChromaRetriever.for_reranker(store, args.collection, reranker, spec)
        asyncio.run(search_latency(agent, retriever, two_part[:3], spec))  # warm-up: loads are not latency
        r = asyncio.run(search_latency(agent, retriever, two_part, spec))
        stages = " ".join(f"{n} {1000 * pct(v, 0.5):.1f}" for n, v in r["stages"].items())
        print(
            f"  {label:28s} {1000 * pct(r['total'], 0.5):7.1f} {1000 * pct(r['total'], 0.95):7.1f}  {stages:43s} "
            f"{','.join(sorted(map(str, r['tower'])))!s:12s} {','.join(sorted(map(str, r['passages'])))}"
        )
    print("  target: p50 <= 150 ms")
    qids = [
        q
        for q in data.queries
        if data.qrels.get(q)
        and (not args.recall_collection or data.query_meta.get(q, {}).get("collection") == args.recall_collection)
    ]
    qids = sorted(rng.sample(sorted(qids), min(args.recall_n, len(qids))))
    if not qids:
        return
    ks = (10, 20)
    print(
        f"\nfirst-stage dense Recall@k, {len(qids)} single real questions"
        f"{' of ' + args.recall_collection if args.recall_collection else ''}:"
    )
    towers = [(label, spec, "base") for label, spec in specs] + [(label, spec, "model") for label, spec in specs[1:]]
    for label, spec, first_stage in towers:
        retriever = ChromaRetriever.for_reranker(store, args.collection, reranker, spec, first_stage=first_stage)
        rec = first_stage_recall(retriever, data, qids, ks)
        print(
            f"  {label:28s} query tower {retriever.query_tower:8s} "
            + "  ".join(f"R@{k} {v:.4f}" for k, v in rec.items())
        )
    reranker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=150, help="two-part questions (default 150)")
    ap.add_argument("--budget", type=int, default=40, help="passages retrieved per question, all queries together")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--home",
        default=os.environ.get("ADAPTRANK_BENCH_HOME", str(Path.home() / ".cache" / "adaptrank-bench")),
        help="ADAPTRANK_HOME for the bench (the ingested collection is cached here)",
    )
    ap.add_argument("--collection", default="medquad-dev")
    ap.add_argument("--model", default=None, help="reranker model (default: the settings' default, zero-shot)")
    ap.add_argument("--llm", action="store_true", help="also decompose with the embedded LLM")
    ap.add_argument("--llm-n", type=int, default=None, help="questions for the LLM method (default: --n)")
    ap.add_argument("--hybrid", action="store_true", help="also run (b) with BM25+dense RRF retrieval")
    ap.add_argument("--llm-only", action="store_true", help="with --llm: skip the rule-based methods")
    ap.add_argument("--latency-n", type=int, default=100, help="questions for the search latency section (0: skip)")
    ap.add_argument("--adapted", default=None, help="an adapted model's store name (latency and first-stage recall)")
    ap.add_argument("--models-home", default=None, help="the ADAPTRANK_HOME whose model store holds --adapted")
    ap.add_argument("--recall-n", type=int, default=1000, help="single real questions for first-stage recall (0: skip)")
    ap.add_argument("--recall-collection", default=None, help="only questions of this collection (GARD | GHR)")
    args = ap.parse_args()

    from adaptrank.agents.agent import AgentConfig, DecompositionAgent
    from adaptrank.agents.retrieval import ChromaRetriever
    from adaptrank.core.beir import load_beir
    from adaptrank.core.docstore import DocStore
    from adaptrank.core.engine import Reranker
    from adaptrank.core.settings import Settings

    settings = Settings(home=Path(args.home), cache_size=0)  # no score cache: methods must not share work
    print(f"machine: {cpu_line()}")
    store = DocStore(settings)
    ingest_medquad(store, args.collection, args.home)

    data = load_beir(DATA)
    if args.latency_n or args.recall_n:
        latency_and_recall(args, store, data, settings)
    if not args.n:
        return
    qs = build_questions(data, args.n, args.seed)
    print(f"questions: {len(qs)}, e.g. {qs[0]['question']!r}")

    reranker = Reranker(args.model, settings=settings)
    retriever = ChromaRetriever(store, args.collection)
    agent = DecompositionAgent(reranker, None, AgentConfig(max_subquestions=2))  # rules, or given sub-questions
    # warm up: model loads are not part of any method's latency
    asyncio.run(agent.arun(qs[0]["question"], retriever, top_n=5, k=5))

    b = args.budget
    plain = {"decompose": False}
    methods: list[tuple[str, object, dict, list, list | None]] = [
        ("(a) single query", retriever, plain, qs, None),
        ("(b) rules +orig", retriever, {"retrieve_original": True, "rerank": "original"}, qs, None),
        ("(b) rules subs", retriever, {"retrieve_original": False, "rerank": "original"}, qs, None),
        ("(b) rules +orig fusion", retriever, {"retrieve_original": True, "rerank": "fusion"}, qs, None),
        ("(b) rules subs fusion", retriever, {"retrieve_original": False, "rerank": "fusion"}, qs, None),
    ]
    if args.llm_only:
        methods = []
    if args.hybrid:
        hybrid = ChromaRetriever(store, args.collection, hybrid=True)
        methods.append(
            ("(b) rules subs fusion hybrid", hybrid, {"retrieve_original": False, "rerank": "fusion"}, qs, None)
        )
    llm_note = ""
    if args.llm:
        from adaptrank.agents.decompose import decompose_many
        from adaptrank.agents.llm import load_llm

        t = time.perf_counter()
        llm = load_llm(settings)
        load_s = time.perf_counter() - t
        llm_qs = qs[: args.llm_n or len(qs)]
        t = time.perf_counter()
        decs = []
        for lo in range(0, len(llm_qs), 16):  # batched generation, 16 prompts per call
            decs += decompose_many([q["question"] for q in llm_qs[lo : lo + 16]], llm, max_subquestions=2)
        dec_s = time.perf_counter() - t
        ok = sum(d.method == "llm" for d in decs)
        llm_note = (
            f"embedded LLM ({llm.name}): load {load_s:.1f}s, batched decomposition of {len(llm_qs)} questions "
            f"in {dec_s:.1f}s ({1000 * dec_s / len(llm_qs):.0f} ms/question); valid for {ok}/{len(llm_qs)}, "
            "the rest fell back to rules"
        )
        methods.append(("(a) single query [llm subset]", retriever, plain, llm_qs, None))
        methods.append(("(b) llm +orig", retriever, {"retrieve_original": True, "rerank": "original"}, llm_qs, decs))
        methods.append(
            ("(b) llm +orig fusion", retriever, {"retrieve_original": True, "rerank": "fusion"}, llm_qs, decs)
        )
        methods.append(
            ("(b) llm subs fusion", retriever, {"retrieve_original": False, "rerank": "fusion"}, llm_qs, decs)
        )

    rows = []
    for name, ret, kw, subset, decs_ in methods:
        t = time.perf_counter()
        s = asyncio.run(run_method(agent, ret, subset, b, decs_, **kw))
        s["n"] = len(subset)
        s["wall"] = time.perf_counter() - t
        rows.append((name, s))
        print(f"  ran {name} on {len(subset)} questions in {s['wall']:.1f}s", file=sys.stderr)

    def base_for(name: str) -> float:
        ref = "(a) single query [llm subset]" if "llm" in name else "(a) single query"
        s = dict(rows)[ref]
        return s["both"] / s["n"]

    print(
        f"\nreranker: {reranker.default_model}; budget {b} passages per question (retrieval), top 10 documents "
        f"scored; a document's rank is its best chunk's"
    )
    if llm_note:
        print(llm_note)
    print(
        f"{'method':30} {'n':>4} {'both@10':>8} {'ratio':>6} {'R@10':>6} {'MRR1':>6} {'MRR2':>6} "
        f"{'pool both':>9} {'queries':>7} {'fallbk':>6}"
    )
    for name, s in rows:
        both, base = s["both"] / s["n"], base_for(name)
        print(
            f"{name:30} {s['n']:4d} {both:8.3f} {both / base if base else float('nan'):6.2f} "
            f"{statistics.mean(s['recall']):6.3f} {statistics.mean(s['mrr1']):6.3f} {statistics.mean(s['mrr2']):6.3f} "
            f"{s['pool_both'] / s['n']:9.3f} {statistics.mean(s['n_queries']):7.2f} {s['fallback']:6d}"
        )
    stages = ["decompose", "retrieve", "merge", "rerank"]
    print("\nlatency per question, mean ms:  " + " ".join(f"{x:>9}" for x in [*stages, "total"]))
    for name, s in rows:
        print(
            f"  {name:30}"
            + " ".join(f"{fmt_ms(s['stages'].get(x, [])):>9}" for x in stages)
            + f" {fmt_ms(s['total']):>9}"
        )
    print()
    for name, s in rows:
        if name.startswith("(b)"):
            both, base = s["both"] / s["n"], base_for(name)
            print(f"ratio {name}: {both / base if base else float('nan'):.2f} (target >= 1.20)")
    reranker.close()


if __name__ == "__main__":
    main()
