"""Choose the query-encoder's weight-space mix (``interpolation``, WiSE-FT) on a collection's DEV half.

Takes a model adapted by ``bench/self_adapt.py --protocol cross`` with ``interpolation`` 1 (the trained
tower alone) and, for each mix ``a``, writes the version ``base + a * (trained - base)`` next to it;
then prints, per mix:

* MRR@10 / nDCG@10 on the collection's **dev half** real questions (BM25 top-30 reranked): the
  only real questions a default may be chosen on (the test half is what ``self_adapt`` reports);
* MRR@10 on the generated dev split and the one-sided 90% bootstrap lower bound of its gain over
  zero-shot: what the promotion gate would see for that mix.

    python bench/self_adapt.py --targets GHR --home H --adapt-json '{"interpolation": 1.0}'
    python bench/interpolation_sweep.py --home H --target GHR --model ghr-reranker@VERSION
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_line
from _medquad import DATA
from self_adapt import evaluate, medquad_corpus, medquad_qrels, split_halves


def build_dev_half(out: Path, collection: str, seed: int = 0, exclude: Path | None = None) -> Path:
    """``out`` (BEIR): the collection's whole corpus with the dev half's questions and qrels; without
    the conditions that the questions of ``exclude`` (a query log drawn from the dev half: one
    question per line) ask about. Leaving out only the log's own questions would let a lever that
    trains on the log score on its siblings (same condition, other aspects): topic leakage that the
    test half, whose conditions no log question touches, never sees."""
    from adaptrank.training.querylog import read_queries  # the log as generation reads it

    docs = [r for r in medquad_corpus() if r["metadata"]["collection"] == collection]
    dev_half = split_halves(list({d["title"].lower() for d in docs}), seed)
    title = {d["_id"]: d["title"].lower() for d in docs}
    qrels = [q for q in medquad_qrels() if q[1] in title and title[q[1]] in dev_half]
    rows = [json.loads(x) for x in (DATA / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    skip = set(read_queries(exclude)) if exclude is not None else set()
    logged = {r["_id"] for r in rows if " ".join(r["text"].split()) in skip}
    touched = {title[q[1]] for q in qrels if q[0] in logged}
    qrels = [q for q in qrels if title[q[1]] not in touched]
    qids = {q[0] for q in qrels}
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), "utf-8")
    (out / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(q) + "\n" for q in qrels))
    keep = [r for r in rows if r["_id"] in qids]
    (out / "queries.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), "utf-8")
    return out


@functools.cache
def zero_shot_tower():
    """The zero-shot tower every mix starts from (loaded once per sweep)."""
    from adaptrank.core.engine.biencoder import default_embedding_path, load_sentence_transformer

    return load_sentence_transformer(default_embedding_path(), "cpu")


def write_mix(settings, model: str, version: str, alpha: float) -> str:
    """The version ``<version>-a<alpha>`` of ``model``: its query tower mixed with the zero-shot one."""
    from adaptrank.core.engine.biencoder import load_sentence_transformer
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.training.finetune.query_encoder import mix_weights

    store = ModelStore(settings.models_dir)
    mixed = f"{version}-a{alpha:g}".replace(".", "p")
    if mixed in store.versions(model):
        return f"{model}@{mixed}"
    ref = store.get(model, version)
    if ref.card.extra.get("interpolation", 1.0) != 1.0:
        raise SystemExit(f"{model}@{version} was already mixed; adapt with interpolation 1.0 first")
    tower = load_sentence_transformer(str(ref.path / "query_encoder"), "cpu")
    mix_weights(tower, zero_shot_tower(), alpha)
    card = ref.card.model_dump()
    card["extra"] = {**card["extra"], "interpolation": alpha}
    with store.writing(model, card, version=mixed) as tmp:
        tower.save(str(tmp / "query_encoder"))
    return f"{model}@{mixed}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="the --home of the self_adapt cross run")
    ap.add_argument("--target", default="GHR")
    ap.add_argument("--model", required=True, help="NAME@VERSION adapted with interpolation 1.0")
    ap.add_argument("--alphas", default="0.25,0.5,0.75,1")
    ap.add_argument("--max-eval-queries", type=int, default=None)
    args = ap.parse_args()

    from adaptrank.core.engine.models import load_scorer
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.core.settings import Settings
    from adaptrank.training import promotion
    from adaptrank.training.dataset import DatasetStore, read_groups
    from adaptrank.training.finetune.data import dev_metrics

    settings = Settings(home=args.home / args.target)
    store = ModelStore(settings.models_dir)
    name, _, version = args.model.partition("@")
    t0 = time.perf_counter()
    specs = {float(a): write_mix(settings, name, version, float(a)) for a in args.alphas.split(",")}
    dev_dir = build_dev_half(args.home / args.target / "data" / "devhalf", args.target)
    report = evaluate(dev_dir, ["zero-shot", *specs.values()], settings, args.max_eval_queries)

    ds, _, ds_version = store.get(name, version).card.dataset.partition("@")
    groups = [g for g in read_groups(DatasetStore(settings).get(ds, ds_version).file("dev")) if g.negatives]
    zs_dev, zs_groups = dev_metrics(load_scorer("zero-shot", store, settings).score_pairs, groups)
    zs_real = report.get("zero-shot").metrics
    print(
        f"\n{args.target} dev half: {report.queries} real questions (BM25 top-30); generated dev split: {len(groups)} groups"
    )
    print(
        f"{'mix':>5s} {'MRR@10':>8s} {'nDCG@10':>8s} {'dMRR':>7s} {'gen-dev MRR':>11s} {'gen dMRR':>8s} {'gen LB90':>8s}"
    )
    print(f"{0:5g} {zs_real['mrr@10']:8.4f} {zs_real['ndcg@10']:8.4f} {0:+7.4f} {zs_dev['dev_mrr@10']:11.4f} {0:+8.4f}")
    for alpha, spec in specs.items():
        m = report.get(spec).metrics
        dev, per = dev_metrics(load_scorer(spec, store, settings).score_pairs, groups)
        lb = promotion.paired_lower_bound(per[:, 0], zs_groups[:, 0])
        print(
            f"{alpha:5g} {m['mrr@10']:8.4f} {m['ndcg@10']:8.4f} {m['mrr@10'] - zs_real['mrr@10']:+7.4f} "
            f"{dev['dev_mrr@10']:11.4f} {dev['dev_mrr@10'] - zs_dev['dev_mrr@10']:+8.4f} {lb:+8.4f}",
            flush=True,
        )
    print(f"{time.perf_counter() - t0:.0f} s; machine: {cpu_line()}")


if __name__ == "__main__":
    main()
