"""The proof of self-adaptation on medquad-dev: a collection's corpus alone as a team's document
store, ``adapt`` with its defaults on this CPU, evaluated on REAL questions never used for training.

``--protocol cross`` (the default): medquad-dev holds two collections with different question
styles, GARD and GHR. For each target collection C (``--targets``):

1. the store is C's whole corpus (``corpus.jsonl`` only: what generation reads);
2. C's conditions are split in two halves by a seeded draw: the *dev half* (the only real questions
   defaults were ever looked at with; and where ``--queries N`` takes its query log from) and the
   *test half*, whose real questions are reported here and nowhere else;
3. ``adapt`` runs with every default (no question types, no query log unless ``--queries``): generate
   -> fine-tune -> the promotion gate on the generated dev split;
4. zero-shot and the adapted version (promoted or not) rerank the BM25 top-30 of the test half's
   questions: MRR@10, nDCG@10, the gain, whether the gate promoted and whether that agreed with the
   real result (a promotion that loses, or a refusal that would have won, is a disagreement), and wall
   time per stage. Defaults were developed on GHR's dev half, except corpus questions (GHR has none),
   which were tried on GARD's dev half; neither test half was looked at before a reported run
   (docs/finetuning.md).

    python bench/self_adapt.py                                # both collections, defaults
    python bench/self_adapt.py --queries 200                  # + a 200-question query log
                                                              # and a paired arm without its groups
    python bench/self_adapt.py --targets GARD --dtype float32 # the LLM in fp32 (a CPU without bf16)

``--protocol single`` is the older run: every document of ``--focuses`` random conditions of both
collections as one store, typed questions, evaluated on that store's real questions; with
``--dataset`` and ``--levers`` it retrains on one dataset, one setting per row.
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

from _medquad import DATA  # where medquad-dev lies: one place for every bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def medquad_corpus() -> list[dict]:
    """medquad-dev's documents (corpus.jsonl rows)."""
    return [json.loads(line) for line in (DATA / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]


def medquad_qrels() -> list[list[str]]:
    """medquad-dev's qrels rows ``[query-id, corpus-id, score]`` without the header."""
    return [line.split("\t") for line in (DATA / "qrels.tsv").read_text(encoding="utf-8").splitlines()][1:]


def build_store(out: Path, focuses: int, seed: int) -> tuple[Path, Path, int]:
    """``out/store`` (corpus only: what generation reads) and ``out/eval`` (+ real questions, qrels)."""
    rows = medquad_corpus()
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
    qrels = medquad_qrels()
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

    return evaluate_beir(
        ev_dir,
        models,
        depth=30,
        max_queries=max_queries,
        settings=settings,
        progress=progress_printer("eval"),
        fuse=fuse,
    )


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
        (
            "method=cross-encoder (MiniLM init, 128, 1 epoch)",
            {"method": "cross-encoder", "max_length": 128, "epochs": 1},
        ),
    ],
}


# -- the cross protocol ------------------------------------------------------------------------
def split_halves(titles: list[str], seed: int = 0) -> set[str]:
    """The dev half of a collection's conditions (a seeded draw; the rest is the test half)."""
    titles = sorted(titles)
    return set(random.Random(seed).sample(titles, len(titles) // 2))


def build_collection(
    out: Path, collection: str, log_size: int, seed: int = 0
) -> tuple[Path, Path, Path | None, int, int]:
    """``out/store`` (corpus only), ``out/test`` (+ the test half's questions and qrels) and, with
    ``log_size``, ``out/log.txt``: that many real questions of the dev half, one per line."""
    rows = medquad_corpus()
    docs = [r for r in rows if r["metadata"]["collection"] == collection]
    dev_half = split_halves(list({d["title"].lower() for d in docs}), seed)
    title = {d["_id"]: d["title"].lower() for d in docs}
    store, test = out / "store", out / "test"
    for folder in (store, test):
        folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    (store / "corpus.jsonl").write_text(text, encoding="utf-8")
    (test / "corpus.jsonl").write_text(text, encoding="utf-8")
    qrels = medquad_qrels()
    qrels = [q for q in qrels if q[1] in title]
    test_q = {q[0] for q in qrels if title[q[1]] not in dev_half}
    dev_q = sorted({q[0] for q in qrels if title[q[1]] in dev_half})
    (test / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(q) + "\n" for q in qrels if q[0] in test_q)
    )
    questions = {
        json.loads(line)["_id"]: line for line in (DATA / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    }
    (test / "queries.jsonl").write_text("".join(questions[q] + "\n" for q in sorted(test_q)), encoding="utf-8")
    log = None
    if log_size:
        log = out / "log.txt"
        pick = random.Random(seed + 1).sample(dev_q, min(log_size, len(dev_q)))
        log.write_text("".join(json.loads(questions[q])["text"].strip() + "\n" for q in pick), encoding="utf-8")
    return store, test, log, len(docs), len(test_q)


def without_log(settings, dataset: str) -> tuple[str, int]:
    """A copy of ``dataset`` without its query-log groups (train and dev), and how many it dropped:
    the same generated groups in the same split, so training on it is this run *without* the log."""
    from adaptrank.training.dataset import DatasetStore

    ds = DatasetStore(settings)
    name, _, version = dataset.partition("@")
    splits = [ds.load(name, version or None, s, allow_empty=True) for s in ("train", "dev")]
    kept = [[g for g in split if g.meta.get("source") != "query_log"] for split in splits]
    dropped = sum(map(len, splits)) - sum(map(len, kept))
    ref = ds.write(
        f"{name}-nolog", train=kept[0], dev=kept[1], card={"source": {"kind": "no query log", "of": dataset}}
    )
    return f"{ref.name}@{ref.version}", dropped


def no_log_arm(settings, params, dataset: str) -> tuple[str, Any, float]:
    """Fine-tune exactly as ``adapt`` did, on its dataset minus the log's groups (never promoted).
    Paired with the run itself, it measures what the log adds with the generation held fixed: two
    separate runs differ by more than the log does (docs/finetuning.md)."""
    from adaptrank.training.finetune import finetune

    ds, dropped = without_log(settings, dataset)
    log(f"  no-log arm: {ds} ({dropped} log groups left out)")
    t0 = time.perf_counter()
    res = finetune(
        params.finetune_params(ds, f"{params.base_name}-nolog", False),
        settings,
        progress=progress_printer("finetune no-log"),
    )
    return f"{params.base_name}-nolog@{res.version}", res, time.perf_counter() - t0


def run_cross(args: argparse.Namespace) -> None:
    from adaptrank.core.settings import Settings
    from adaptrank.training.adapt import AdaptParams, adapt

    base = args.home or Path(tempfile.mkdtemp(prefix="adaptrank-cross-"))
    print(f"machine: {cpu_line()}")
    print(f"LLM dtype: {args.dtype}; query log: {args.queries or 'none'}; home {base}")
    rows = []
    for target in args.targets.split(","):
        home = base / target
        settings = Settings(home=home, llm_dtype=args.dtype)
        store, test, log, n_docs, n_test = build_collection(home / "data", target, args.queries)
        log_note = f", query log {args.queries} dev-half questions" if log else ""
        print(f"\n[{target}] store: {n_docs} documents; test half: {n_test} real questions{log_note}", flush=True)
        overrides = json.loads(args.adapt_json) if args.adapt_json else {}
        t0 = time.perf_counter()
        params = AdaptParams(
            path=str(store),
            name=target.lower(),
            queries=str(log) if log else None,
            evaluate=False,
            seed=args.seed,
            **overrides,
        )
        result = adapt(
            params,
            settings,
            progress=progress_printer(f"adapt {target}"),
            checkpoint_dir=home / "checkpoint",
            restrict_paths=False,
        )
        wall = time.perf_counter() - t0
        print(f"[{target}] {result.model}@{result.version}: {result.decision}", flush=True)
        arm = no_log_arm(settings, params, result.dataset) if log else None
        t0 = time.perf_counter()
        models = ["zero-shot", f"{result.model}@{result.version}", *([arm[0]] if arm else [])]
        report = evaluate(test, models, settings, args.max_eval_queries)
        zs, ad = report.get("zero-shot").metrics, report.get(models[1]).metrics
        gain = ad["mrr@10"] - zs["mrr@10"]
        if arm:
            nolog = report.get(arm[0]).metrics
            print(
                f"[{target}] paired query-log lever (same generated groups): with the log {gain:+.4f}, "
                f"without {nolog['mrr@10'] - zs['mrr@10']:+.4f} MRR@10 over zero-shot; the log adds "
                f"{ad['mrr@10'] - nolog['mrr@10']:+.4f} (no-log arm: dev {arm[1].metrics_before} -> "
                f"{arm[1].metrics_after}, {arm[2] / 60:.1f} min)",
                flush=True,
            )
        rows.append(
            dict(
                target=target,
                zs=zs,
                ad=ad,
                gain=gain,
                promoted=result.promoted,
                agree=result.promoted == (gain > 0),
                seconds=result.seconds,
                wall=wall,
                eval=time.perf_counter() - t0,
                queries=report.queries,
                decision=result.decision,
            )
        )
    print(
        f"\ncross protocol: adapt with defaults{' + query log' if args.queries else ''}; test-half real questions, "
        "BM25 top-30 reranked"
    )
    print(
        f"{'collection':10s} {'questions':>9s} {'zero-shot':>9s} {'adapted':>8s} {'gain':>7s} {'dNDCG':>7s} "
        f"{'promoted':>8s} {'gate ok':>7s} {'generate':>9s} {'finetune':>9s} {'adapt':>8s}"
    )
    for r in rows:
        print(
            f"{r['target']:10s} {r['queries']:9d} {r['zs']['mrr@10']:9.4f} {r['ad']['mrr@10']:8.4f} {r['gain']:+7.4f} "
            f"{r['ad']['ndcg@10'] - r['zs']['ndcg@10']:+7.4f} {r['promoted']!s:>8s} {r['agree']!s:>7s} "
            f"{r['seconds'].get('generate', 0) / 60:8.1f}m {r['seconds'].get('finetune', 0) / 60:8.1f}m "
            f"{r['wall'] / 60:7.1f}m"
        )
    print(f"targets: gain >= +0.05 MRR@10 in both directions; adapt <= 20 min without AMX. machine: {cpu_line()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=["cross", "single"], default="cross")
    ap.add_argument("--targets", default="GHR,GARD", help="cross: the collections to adapt to and report on")
    ap.add_argument("--queries", type=int, default=0, help="cross: a query log of this many dev-half real questions")
    ap.add_argument("--dtype", default="auto", help="cross: the embedded LLM's dtype (auto | float32 | bfloat16)")
    ap.add_argument("--adapt-json", default=None, help="cross: AdaptParams overrides as JSON (levers, not defaults)")
    ap.add_argument("--focuses", type=int, default=300, help="diseases drawn; all their documents form the store")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="ADAPTRANK_HOME for this run (default: a temp dir)")
    ap.add_argument("--dataset", default=None, help="reuse NAME@VERSION from --home instead of generating")
    ap.add_argument(
        "--max-documents", type=int, default=None, help="generate for this many store documents (default: all)"
    )
    ap.add_argument("--queries-per-document", "-k", type=int, default=3)
    ap.add_argument("--negatives", type=int, default=7)
    ap.add_argument("--judge", action="store_true", help="LLM-judge the mined candidates")
    ap.add_argument(
        "--consistency",
        type=int,
        default=None,
        help="round-trip filter: keep a query only if retrieval ranks its own document within this depth",
    )
    ap.add_argument("--method", default="auto")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--max-eval-queries", type=int, default=None)
    ap.add_argument(
        "--fuse", action="store_true", help="also fit a BM25 interpolation weight on the generated dev split"
    )
    ap.add_argument(
        "--levers", default="", help=f"comma list of {sorted(LEVERS)} and 'queries' to run after the main result"
    )
    args = ap.parse_args()
    if args.protocol == "cross":
        run_cross(args)
        return

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
            source="beir",
            path=str(store_dir),
            output_name="medquad-synth",
            max_documents=args.max_documents or n_docs,
            queries_per_document=args.queries_per_document,
            negatives=args.negatives,
            judge=args.judge,
            question_types="medical",
            seed=args.seed,
            consistency_depth=args.consistency,
        )
        ref = generate_dataset(
            params,
            settings,
            progress=progress_printer("generate"),
            checkpoint_dir=home / "gen-checkpoint",
            restrict_paths=False,
        )
        times["generate"] = time.perf_counter() - t0
        dataset = f"{ref.name}@{ref.version}"
        log(f"dataset {dataset}: {ref.card.counts} ({ref.card.seconds})")

    ft_kw: dict[str, Any] = dict(method=args.method, epochs=args.epochs, group_size=args.group_size, promote=True)
    if args.max_length:
        ft_kw["max_length"] = args.max_length
    res, times["finetune"] = run_finetune(settings, dataset, "medquad-reranker", **ft_kw)
    adapted = f"medquad-reranker@{res.version}"
    log(
        f"fine-tuned {adapted} ({res.method}, {res.steps} steps, best step {res.best_step}): "
        f"dev {res.metrics_before} -> {res.metrics_after}"
    )

    t0 = time.perf_counter()
    report = evaluate(ev_dir, ["zero-shot", adapted], settings, args.max_eval_queries)
    times["evaluate"] = time.perf_counter() - t0
    extra: list[tuple[str, dict]] = []
    if args.fuse:
        w, grid = fit_fusion(settings, dataset, store_dir, adapted)
        log(f"fusion weight fitted on the generated dev split: {w} ({grid})")
        fused = evaluate(ev_dir, [adapted], settings, args.max_eval_queries, fuse={adapted: w})
        extra.append((f"{adapted} + {w}*BM25", fused.results[-1].metrics))

    print(
        f"\nmedquad-dev self-adaptation: {n_docs} documents ({args.focuses} diseases), "
        f"{report.queries} real questions, BM25 top-30 reranked"
    )
    print(table(report, extra))
    zs, ad = report.get("zero-shot").metrics, report.results[-1].metrics
    gen_ft = times.get("generate", 0.0) + times["finetune"]
    print(
        "\nwall time (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in times.items())
        + (f"; generate+finetune {gen_ft:.0f} ({gen_ft / 60:.1f} min)" if "generate" in times else "")
    )
    print(
        f"adapted vs zero-shot: MRR@10 {ad['mrr@10'] - zs['mrr@10']:+.4f} (target >= +0.05), "
        f"nDCG@10 {ad['ndcg@10'] - zs['ndcg@10']:+.4f}"
    )
    print(f"load average at end: {os.getloadavg()}")

    levers = [x for x in args.levers.split(",") if x]
    if levers:
        print(f"\nlevers (same dataset {dataset}; each row changes one setting from the run above)")
        print(f"{'setting':52s} {'MRR@10':>8s} {'nDCG@10':>8s} {'dMRR':>7s} {'train s':>8s}")
        print(
            f"{'defaults (above)':52s} {ad['mrr@10']:8.4f} {ad['ndcg@10']:8.4f} {ad['mrr@10'] - zs['mrr@10']:+7.4f} {times['finetune']:8.0f}"
        )
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
                m = (
                    evaluate(ev_dir, [f"medquad-lever@{r.version}"], settings, args.max_eval_queries)
                    .results[-1]
                    .metrics
                )
                print(
                    f"{label:52s} {m['mrr@10']:8.4f} {m['ndcg@10']:8.4f} {m['mrr@10'] - zs['mrr@10']:+7.4f} {sec:8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
