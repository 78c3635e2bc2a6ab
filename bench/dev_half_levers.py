"""Try a training-data lever on a collection's DEV half, without generating again.

Takes the dataset that ``bench/self_adapt.py --protocol cross`` generated for a collection, writes a
variant of it per lever, fine-tunes each with the defaults (never promoted) and prints MRR@10 /
nDCG@10 on the collection's dev-half real questions (BM25 top-30 reranked) next to zero-shot and
the unchanged dataset. The test half is never read here: it is what ``self_adapt`` reports.

Levers (on the generated groups, with the corpus the dataset came from):

* ``aspect-drop``: drop a group when a sibling passage (same title or document) scores higher than
  its positive on the query's aspect words by BM25 (``Specificity.best_sibling``);
* ``aspect-relabel``: there, make that sibling the positive and the old positive a hard negative;
* ``no-log``: drop the query log's groups (``query_type`` ``log``: a ``--queries`` run's dataset);
* ``log-margin:X``: keep only the log groups whose teacher picked their positive by at least X
  (z units; ``meta.teacher_margin``);
* ``log-dev``: every log group in the dev split, none in train: the log picks the best step and
  gates promotion, and no teacher label is trained on;
* ``log-relabel:X``: label the log again with a second-round teacher, the model trained without the
  log (``no-log``, which must come earlier in ``--levers``) in place of the zero-shot tower, next to
  the LLM's likelihood; keep the queries it picks by at least X;
* ``docs:N``: keep the groups of a seeded random N of the dataset's documents (train and dev), as
  a run that stopped at a time budget after N documents would have them;
* ``headings``: add a group per passage of the dataset's documents that opens with a question
  (``training/headings.py``): that question, the passage, mined hard negatives (same split as the
  document).

    python bench/dev_half_levers.py --home H --target GHR --dataset ghr-synth@VERSION
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line
from interpolation_sweep import build_dev_half
from self_adapt import evaluate, run_finetune


def variant(settings, dataset: str, lever: str, store_dir: Path) -> tuple[str, dict[str, int]]:
    from adaptrank.training.corpus import load_corpus
    from adaptrank.training.dataset import DatasetStore
    from adaptrank.training.specificity import Specificity

    ds = DatasetStore(settings)
    name, _, version = dataset.partition("@")
    corpus = load_corpus(settings, "beir", path=str(store_dir), restrict_paths=False)
    if lever == "headings":
        return _with_headings(settings, ds, name, version, corpus, dataset)
    if lever in ("no-log", "log-dev") or lever.startswith("log-margin:"):
        return _log_subset(ds, name, version, dataset, lever)
    if lever.startswith("docs:"):
        return _doc_subset(ds, name, version, lever)
    spec = Specificity(corpus.passages)
    text = {p.id: p.text for p in corpus.passages}
    counts = {"groups": 0, "changed": 0}
    out = []
    for split in ("train", "dev"):
        kept = []
        for g in ds.load(name, version or None, split, allow_empty=True):
            counts["groups"] += 1
            pid = g.meta.get("passage_id")
            best = spec.best_sibling(g.query, pid) if pid in text else None
            if best is None:
                kept.append(g)
                continue
            counts["changed"] += 1
            if lever == "aspect-relabel":
                new = g.model_copy(deep=True)
                keep = [(t, i) for t, i in zip(g.negatives, g.negative_ids, strict=False) if i != best]
                new.negatives = [g.positive, *[t for t, _ in keep]][: len(g.negatives)]
                new.negative_ids = [pid, *[i for _, i in keep]][: len(g.negatives)]
                new.positive = text[best]
                new.meta = {**g.meta, "passage_id": best, "relabelled_from": pid}
                kept.append(new)
        out.append(kept)
    ref = ds.write(f"{name}-{lever}", train=out[0], dev=out[1], card={"source": {"kind": lever, "of": dataset}})
    return f"{ref.name}@{ref.version}", counts


def _tag(lever: str) -> str:
    """A lever as a dataset-name suffix (``log-margin:1.5`` -> ``log-margin1p5``)."""
    return lever.replace(":", "").replace(".", "p")


def _log_subset(ds, name, version, dataset, lever) -> tuple[str, dict[str, int]]:
    """The dataset without its log groups (``no-log``), with the confidently labelled ones only
    (``log-margin:X``) or with all of them in the dev split (``log-dev``)."""
    floor = float(lever.split(":", 1)[1]) if lever.startswith("log-margin:") else float("inf")
    from collections import Counter

    from adaptrank.training.generate.pipeline import log_for_dev

    counts = {"log_groups": 0, "log_kept": 0}
    out: list[list] = [[], []]
    moved = []
    for i, split in enumerate(("train", "dev")):
        for g in ds.load(name, version or None, split, allow_empty=True):
            if g.query_type == "log":
                counts["log_groups"] += 1
                if lever == "log-dev":
                    moved.append(g)
                    continue
                if float(g.meta.get("teacher_margin", 0.0)) < floor:
                    continue
                counts["log_kept"] += 1
            out[i].append(g)
    kept = log_for_dev(out[0], moved, Counter())  # as generation places the log by default
    counts["log_kept"] += len(kept)
    out[1].extend(kept)
    ref = ds.write(f"{name}-{_tag(lever)}", train=out[0], dev=out[1], card={"source": {"kind": lever, "of": dataset}})
    return f"{ref.name}@{ref.version}", counts


def _doc_subset(ds, name, version, lever) -> tuple[str, dict[str, int]]:
    """The groups of a seeded random ``N`` of the dataset's documents, both splits."""
    import random

    splits = {s: ds.load(name, version or None, s, allow_empty=True) for s in ("train", "dev")}
    docs = sorted({g.doc_id for groups in splits.values() for g in groups})
    n = int(lever.split(":", 1)[1])
    keep = set(random.Random(0).sample(docs, min(n, len(docs))))
    out = {s: [g for g in groups if g.doc_id in keep] for s, groups in splits.items()}
    ref = ds.write(f"{name}-{_tag(lever)}", train=out["train"], dev=out["dev"], card={"source": {"kind": lever}})
    counts = {"documents": len(docs), "kept_documents": len(keep), "train": len(out["train"]), "dev": len(out["dev"])}
    return f"{ref.name}@{ref.version}", counts


def relabel_log(settings, dataset: str, lever: str, home: Path, teacher_model: str) -> tuple[str, dict[str, int]]:
    """The dataset with its log groups labelled again: the teacher's cosine comes from
    ``teacher_model``'s query tower (trained on the generated groups only) against the frozen passage
    vectors, summed with the LLM's likelihood as in the first round (training/querylog.py)."""
    from adaptrank.core.embeddings import embed_passages
    from adaptrank.core.engine.biencoder import load_sentence_transformer
    from adaptrank.core.llm.factory import get_llm
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.core.vectors import embed_texts
    from adaptrank.training.corpus import load_corpus
    from adaptrank.training.dataset import DatasetStore
    from adaptrank.training.generate import GenerateParams
    from adaptrank.training.mining import CandidateMiner
    from adaptrank.training.querylog import Teacher, label_queries, read_queries

    floor = float(lever.split(":", 1)[1])
    ds = DatasetStore(settings)
    name, _, version = dataset.partition("@")
    splits = [
        [g for g in ds.load(name, version or None, s, allow_empty=True) if g.query_type != "log"]
        for s in ("train", "dev")
    ]
    corpus = load_corpus(settings, "beir", path=str(home / "data" / "store"), restrict_paths=False)
    miner = CandidateMiner(corpus, settings, depth=GenerateParams.model_fields["mining_depth"].default, dense="on")
    model, _, mversion = teacher_model.partition("@")
    tower = load_sentence_transformer(
        str(ModelStore(settings.models_dir).get(model, mversion).path / "query_encoder"), "cpu"
    )
    teacher = Teacher(
        get_llm(settings),
        lambda texts: embed_texts(tower, texts),
        lambda texts: embed_passages(list(texts), settings.embedding_model, settings.device),
    )
    queries = read_queries(home / "data" / "log.txt")
    groups, counts = label_queries(queries, miner, teacher, min_margin=floor)
    dev_docs = {g.doc_id for g in splits[1]}
    for g in groups:  # a split holds whole documents; a new document goes to train
        splits[1 if g.doc_id in dev_docs else 0].append(g)
    ref = ds.write(
        f"{name}-{_tag(lever)}", train=splits[0], dev=splits[1], card={"source": {"kind": lever, "of": dataset}}
    )
    return f"{ref.name}@{ref.version}", {"log_groups": len(queries), "log_kept": len(groups), **dict(counts)}


def _with_headings(settings, ds, name, version, corpus, dataset) -> tuple[str, dict[str, int]]:
    from adaptrank.training.dataset import Group
    from adaptrank.training.headings import CORPUS_QUESTION, opening_question
    from adaptrank.training.mining import CandidateMiner

    splits = {s: ds.load(name, version or None, s, allow_empty=True) for s in ("train", "dev")}
    where = {g.doc_id: s for s, gs in splits.items() for g in gs}
    found = [
        (q, p, where[p.doc_id])
        for p in corpus.passages
        if p.doc_id in where and (q := opening_question(p.text, p.title)) is not None
    ]
    miner = CandidateMiner(corpus, settings, depth=30, dense="auto")
    mined = miner.mine([q for q, _, _ in found], [p.doc_id for _, p, _ in found])
    for (q, p, split), cands in zip(found, mined, strict=True):
        negs = cands[:7]
        splits[split].append(
            Group(
                query=q,
                positive=p.text,
                negatives=[c.text for c in negs],
                negative_ids=[c.id for c in negs],
                doc_id=p.doc_id,
                query_type="heading",
                meta={"passage_id": p.id, "template": CORPUS_QUESTION},
            )
        )
    ref = ds.write(f"{name}-headings", train=splits["train"], dev=splits["dev"], card={"source": {"of": dataset}})
    return f"{ref.name}@{ref.version}", {"headings": len(found)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="the --home of the self_adapt cross run")
    ap.add_argument("--target", default="GHR")
    ap.add_argument("--dataset", required=True, help="NAME@VERSION generated for the target")
    ap.add_argument("--adapted", default=None, help="NAME@VERSION trained on --dataset as it is (else: train it)")
    ap.add_argument("--levers", default="aspect-drop,aspect-relabel", help="comma list, or '' for none")
    ap.add_argument("--finetune-json", default="{}", help="FinetuneParams overrides for every row")
    ap.add_argument("--max-eval-queries", type=int, default=None)
    args = ap.parse_args()

    import json

    from adaptrank.core.settings import Settings

    home = args.home / args.target
    settings = Settings(home=home)
    log = home / "data" / "log.txt"  # a --queries run: its log's conditions are left out of the dev half
    dev_dir = build_dev_half(home / "data" / "devhalf", args.target, exclude=log if log.is_file() else None)
    extra = json.loads(args.finetune_json)
    t0 = time.perf_counter()
    rows: list[tuple[str, str, dict[str, int]]] = []
    if args.adapted:
        rows.append(("dataset as generated", args.adapted, {}))
    else:
        res, _ = run_finetune(settings, args.dataset, "lever", promote=False, **extra)
        rows.append(("dataset as generated", f"lever@{res.version}", {"groups": res.train_groups + res.dev_groups}))
    trained: dict[str, str] = {}
    for lever in [x for x in args.levers.split(",") if x]:
        if lever.startswith("log-relabel:"):
            if "no-log" not in trained:
                raise SystemExit("log-relabel:X needs no-log earlier in --levers (its model is the teacher)")
            ds, counts = relabel_log(settings, args.dataset, lever, home, trained["no-log"])
        else:
            ds, counts = variant(settings, args.dataset, lever, home / "data" / "store")
        res, _ = run_finetune(settings, ds, "lever", promote=False, **extra)
        trained[lever] = f"lever@{res.version}"
        rows.append((lever, trained[lever], counts))
    report = evaluate(dev_dir, ["zero-shot", *[r[1] for r in rows]], settings, args.max_eval_queries)
    zs = report.get("zero-shot").metrics
    print(f"\n{args.target} dev half: {report.queries} real questions, BM25 top-30; dataset {args.dataset}")
    print(f"{'lever':28s} {'MRR@10':>8s} {'nDCG@10':>8s} {'dMRR':>7s}  counts")
    print(f"{'zero-shot':28s} {zs['mrr@10']:8.4f} {zs['ndcg@10']:8.4f} {0:+7.4f}")
    for label, spec, counts in rows:
        m = report.get(spec).metrics
        print(f"{label:28s} {m['mrr@10']:8.4f} {m['ndcg@10']:8.4f} {m['mrr@10'] - zs['mrr@10']:+7.4f}  {counts}")
    print(f"{time.perf_counter() - t0:.0f} s; machine: {cpu_line()}")


if __name__ == "__main__":
    main()
