"""The proof of self-adaptation: medquad-dev's corpus alone as a team's document store, the embedded
defaults on this CPU, evaluated on the set's REAL questions (never used for training).

1. The store: every document of ``--focuses`` randomly drawn diseases (so each question's hard
   negatives — the other sections about the same disease — are in the store). Generation sees a
   folder holding ``corpus.jsonl`` only; the real questions and qrels live in a separate folder
   that only the evaluation reads.
2. generate (SmolLM2-135M writes typed questions per document; BM25 + dense mining; judge optional)
3. fine-tune with the defaults (``method=auto``: the residual query-encoder on this offline CPU)
4. evaluate BM25, the zero-shot default and the adapted model on the real questions, reranking the
   BM25 top-30 of the store: MRR@10, nDCG@10, Recall@30; wall time of every stage.

    python bench/self_adapt.py                              # the whole run
    python bench/self_adapt.py --home H --dataset NAME@VER  # reuse a generated dataset
    python bench/self_adapt.py --home H --dataset NAME@VER --levers epochs,group_size,queries,max_length,method
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad-dev"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_store(out: Path, focuses: int, seed: int) -> tuple[Path, Path, int]:
    """``out/store`` (corpus only: what generation reads) and ``out/eval`` (+ real questions, qrels)."""
    rows = [json.loads(line) for line in open(DATA / "corpus.jsonl", encoding="utf-8")]
    titles = sorted({r["title"].lower() for r in rows})
    pick = set(random.Random(seed).sample(titles, min(focuses, len(titles))))
    docs = [r for r in rows if r["title"].lower() in pick]
    store, ev = out / "store", out / "eval"
    store.mkdir(parents=True, exist_ok=True)
    ev.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    (store / "corpus.jsonl").write_text(text, encoding="utf-8")
    (ev / "corpus.jsonl").write_text(text, encoding="utf-8")
    ids = {d["_id"] for d in docs}
    qrels = [line.rstrip("\n").split("\t") for line in open(DATA / "qrels.tsv", encoding="utf-8")][1:]
    keep = [q for q in qrels if q[1] in ids]
    qids = {q[0] for q in keep}
    (ev / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(q) + "\n" for q in keep))
    with open(DATA / "queries.jsonl", encoding="utf-8") as f, open(ev / "queries.jsonl", "w", encoding="utf-8") as g:
        for line in f:
            if json.loads(line)["_id"] in qids:
                g.write(line)
    return store, ev, len(docs)


def progress_printer(stage: str):
    last = [0.0]

    def report(done, total, message):
        now = time.time()
        if now - last[0] > 20 or (total and done >= total):
            last[0] = now
            log(f"  [{stage}] {message or ''} ({done:g}/{total if total else '?'})")

    return report


def evaluate(ev_dir: Path, models: list[str], settings, max_queries: int | None, fuse: dict[str, float] | None = None):
    from adaptrank.training.evaluate import evaluate_beir

    return evaluate_beir(ev_dir, models, depth=30, max_queries=max_queries, settings=settings,
                         progress=progress_printer("eval"), fuse=fuse)


def fit_fusion(settings, dataset: str, store_dir: Path, model: str) -> tuple[float, dict[float, float]]:
    """BM25 interpolation weight fitted on the generated DEV split (synthetic queries, source doc = qrel)."""
    from adaptrank.core.beir import BeirData, load_beir
    from adaptrank.core.engine import Reranker
    from adaptrank.training.dataset import DatasetStore
    from adaptrank.training.evaluate import first_stage_bm25, fit_fusion_weight

    name, _, version = dataset.partition("@")
    dev = DatasetStore(settings).load(name, version or None, "dev")
    corpus = load_beir(store_dir).corpus
    data = BeirData(corpus=corpus)
    for i, g in enumerate(dev):
        base = g.doc_id.split("#", 1)[0]
        if base in corpus:
            data.queries[f"d{i}"] = g.query
            data.qrels[f"d{i}"] = {base: 1}
    pools = first_stage_bm25(data, list(data.queries), 30)
    scorer = Reranker(settings=settings).scorer(model)
    return fit_fusion_weight(scorer.score_pairs, data, pools)


def table(report, extra_rows: list[tuple[str, dict]] | None = None) -> str:
    rows = [(r.model, r.metrics, r.seconds) for r in report.results] + [(n, m, 0.0) for n, m in (extra_rows or [])]
    zs = next((m for n, m, _ in rows if n == "zero-shot"), None)
    lines = [f"{'model':44s} {'MRR@10':>8s} {'nDCG@10':>8s} {'R@30':>7s} {'dMRR':>7s} {'seconds':>8s}"]
    for n, m, sec in rows:
        d = f"{m['mrr@10'] - zs['mrr@10']:+.4f}" if zs else ""
        lines.append(f"{n:44s} {m['mrr@10']:8.4f} {m['ndcg@10']:8.4f} {m['recall@30']:7.4f} {d:>7s} {sec:8.1f}")
    return "\n".join(lines)


def subsample_queries(settings, dataset: str, per_doc: int) -> str:
    """A copy of the dataset keeping the first ``per_doc`` queries of every document (train and dev)."""
    from adaptrank.training.dataset import DatasetStore

    ds = DatasetStore(settings)
    name, _, version = dataset.partition("@")
    out = []
    for split in ("train", "dev"):
        seen: dict[str, int] = {}
        kept = []
        for g in ds.load(name, version or None, split, allow_empty=True):
            doc = g.doc_id
            if seen.get(doc, 0) < per_doc:
                seen[doc] = seen.get(doc, 0) + 1
                kept.append(g)
        out.append(kept)
    new = f"{name}-q{per_doc}"
    ref = ds.write(new, train=out[0], dev=out[1], card={"source": {"kind": "subsample", "of": dataset}})
    return f"{ref.name}@{ref.version}"


def run_finetune(settings, dataset: str, output: str, **kw) -> tuple[Any, float]:
    from adaptrank.training.finetune import finetune

    t0 = time.perf_counter()
    res = finetune({"dataset": dataset, "output_name": output, **kw}, settings, progress=progress_printer("finetune"))
    return res, time.perf_counter() - t0


LEVERS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "epochs": [("epochs=1", {"epochs": 1}), ("epochs=4", {"epochs": 4})],
    "group_size": [("G=2", {"group_size": 2}), ("G=4", {"group_size": 4})],
    "max_length": [("query max_length=32", {"max_length": 32}), ("query max_length=128", {"max_length": 128})],
    "lr": [("lr=2e-5", {"learning_rate": 2e-5}), ("lr=1e-4", {"learning_rate": 1e-4})],
    "patience": [("early stopping (patience 3 dev evaluations)", {"patience": 3})],
    "freeze": [("freeze bottom 4 of 6 layers", {"freeze_layers": 4})],
    "in_batch": [("in-batch negatives too", {"in_batch_negatives": True})],
    "method": [
        ("method=bi-encoder (both towers, max_length 128)", {"method": "bi-encoder", "max_length": 128, "epochs": 1}),
        ("method=residual CE (max_length 128, 1 epoch)", {"method": "residual", "max_length": 128, "epochs": 1}),
        ("method=cross-encoder (MiniLM init, 128, 1 epoch)", {"method": "cross-encoder", "max_length": 128, "epochs": 1}),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--focuses", type=int, default=300, help="diseases drawn; all their documents form the store")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="ADAPTRANK_HOME for this run (default: a temp dir)")
    ap.add_argument("--dataset", default=None, help="reuse NAME@VERSION from --home instead of generating")
    ap.add_argument("--max-documents", type=int, default=None, help="generate for this many store documents (default: all)")
    ap.add_argument("--queries-per-document", "-k", type=int, default=3)
    ap.add_argument("--negatives", type=int, default=7)
    ap.add_argument("--judge", action="store_true", help="LLM-judge the mined candidates")
    ap.add_argument("--consistency", type=int, default=None,
                    help="round-trip filter: keep a query only if retrieval ranks its own document within this depth")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--max-eval-queries", type=int, default=None)
    ap.add_argument("--fuse", action="store_true", help="also fit a BM25 interpolation weight on the generated dev split")
    ap.add_argument("--levers", default="", help=f"comma list of {sorted(LEVERS)} and 'queries' to run after the main result")
    args = ap.parse_args()

    from adaptrank.core.settings import Settings

    home = args.home or Path(tempfile.mkdtemp(prefix="adaptrank-bench-"))
    settings = Settings(home=home)
    log(f"load average at start: {os.getloadavg()}; home {home}")
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    store_dir, ev_dir, n_docs = build_store(home / "medquad-store", args.focuses, args.seed)
    times["store"] = time.perf_counter() - t0
    log(f"store: {n_docs} documents of {args.focuses} diseases; real questions in {ev_dir}")

    dataset = args.dataset
    if dataset is None:
        from adaptrank.training.generate import GenerateParams, generate_dataset

        t0 = time.perf_counter()
        params = GenerateParams(
            source="beir", path=str(store_dir), output_name="medquad-synth",
            max_documents=args.max_documents or n_docs, queries_per_document=args.queries_per_document,
            negatives=args.negatives, judge=args.judge, question_types="medical", seed=args.seed,
            consistency_depth=args.consistency,
        )
        ref = generate_dataset(params, settings, progress=progress_printer("generate"),
                               checkpoint_dir=home / "gen-checkpoint", restrict_paths=False)
        times["generate"] = time.perf_counter() - t0
        dataset = f"{ref.name}@{ref.version}"
        log(f"dataset {dataset}: {ref.card.counts} ({ref.card.seconds})")

    ft_kw: dict[str, Any] = dict(method=args.method, epochs=args.epochs, group_size=args.group_size, promote=True)
    if args.max_length:
        ft_kw["max_length"] = args.max_length
    res, times["finetune"] = run_finetune(settings, dataset, "medquad-reranker", **ft_kw)
    adapted = f"medquad-reranker@{res.version}"
    log(f"fine-tuned {adapted} ({res.method}, {res.steps} steps, best step {res.best_step}): "
        f"dev {res.metrics_before} -> {res.metrics_after}")

    t0 = time.perf_counter()
    report = evaluate(ev_dir, ["zero-shot", adapted], settings, args.max_eval_queries)
    times["evaluate"] = time.perf_counter() - t0
    extra: list[tuple[str, dict]] = []
    if args.fuse:
        w, grid = fit_fusion(settings, dataset, store_dir, adapted)
        log(f"fusion weight fitted on the generated dev split: {w} ({grid})")
        fused = evaluate(ev_dir, [adapted], settings, args.max_eval_queries, fuse={adapted: w})
        extra.append((f"{adapted} + {w}*BM25", fused.results[-1].metrics))

    print(f"\nmedquad-dev self-adaptation: {n_docs} documents ({args.focuses} diseases), "
          f"{report.queries} real questions, BM25 top-30 reranked")
    print(table(report, extra))
    zs, ad = report.get("zero-shot").metrics, report.results[-1].metrics
    gen_ft = times.get("generate", 0.0) + times["finetune"]
    print("\nwall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
          + (f"; generate+finetune {gen_ft:.0f} ({gen_ft / 60:.1f} min)" if "generate" in times else ""))
    print(f"adapted vs zero-shot: MRR@10 {ad['mrr@10'] - zs['mrr@10']:+.4f} (target >= +0.05), "
          f"nDCG@10 {ad['ndcg@10'] - zs['ndcg@10']:+.4f}")
    print(f"load average at end: {os.getloadavg()}")

    levers = [x for x in args.levers.split(",") if x]
    if levers:
        print(f"\nlevers (same dataset {dataset}; each row changes one setting from the run above)")
        print(f"{'setting':52s} {'MRR@10':>8s} {'nDCG@10':>8s} {'dMRR':>7s} {'train s':>8s}")
        print(f"{'defaults (above)':52s} {ad['mrr@10']:8.4f} {ad['ndcg@10']:8.4f} {ad['mrr@10'] - zs['mrr@10']:+7.4f} {times['finetune']:8.0f}")
        for lever in levers:
            runs = LEVERS.get(lever, [])
            if lever == "queries":
                runs = [(f"queries/document={k}", {"_per_doc": k}) for k in (1, 2) if k < args.queries_per_document + 1]
            for label, kw in runs:
                ds = dataset
                kw = dict(kw)
                if "_per_doc" in kw:
                    ds = subsample_queries(settings, dataset, kw.pop("_per_doc"))
                merged = {**ft_kw, **kw}
                try:
                    r, sec = run_finetune(settings, ds, "medquad-lever", **{**merged, "promote": False})
                except Exception as exc:  # noqa: BLE001 - a failed lever is a row, not the end of the table
                    print(f"{label:52s} failed: {exc}")
                    continue
                m = evaluate(ev_dir, [f"medquad-lever@{r.version}"], settings, args.max_eval_queries).results[-1].metrics
                print(f"{label:52s} {m['mrr@10']:8.4f} {m['ndcg@10']:8.4f} {m['mrr@10'] - zs['mrr@10']:+7.4f} {sec:8.0f}", flush=True)


if __name__ == "__main__":
    main()
