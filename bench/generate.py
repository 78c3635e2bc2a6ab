"""Benchmark training-data generation with the embedded LLM on medquad-dev.

Prints, in one run:

1. batched vs one-at-a-time generation on the same query-generation prompts (generated tokens/s
   of both and their ratio; target >= 3);
2. the whole pipeline (query generation, BM25 mining over the full corpus, LLM judge) on
   ``--docs`` documents: documents/min, generated tokens/s, stage times, dataset counts;
3. the judge's accuracy on the REAL questions of those documents: each real question with its
   true answer and ``--judge-negatives`` mined negatives, judged, scored against the qrels
   (accuracy, precision/recall/F1 on positives, ROC AUC of p(yes), always-"no" baseline).

The machine's load average is printed at the start and end: these figures are wall-clock on
whatever else the machine is doing.

    python bench/generate.py                      # 200 documents (the issue's figure)
    python bench/generate.py --docs 20 --ratio-prompts 8 --judge-questions 20   # quick
"""

from __future__ import annotations

import argparse
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

from adaptrank.core.llm.base import LLM


class Metered(LLM):
    """Delegates to an LLM and splits its time and tokens between generation and judging."""

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.name = inner.name
        self.gen = {"calls": 0, "prompts": 0, "tokens": 0, "seconds": 0.0}
        self.jud = {"calls": 0, "prompts": 0, "seconds": 0.0}

    @property
    def stats(self):  # the card reads the inner backend's counters
        return self.inner.stats

    def generate(self, prompts, **kw):
        before, t0 = self.inner.stats.generated_tokens, time.perf_counter()
        out = self.inner.generate(prompts, **kw)
        self.gen["seconds"] += time.perf_counter() - t0
        self.gen["tokens"] += self.inner.stats.generated_tokens - before
        self.gen["calls"] += 1
        self.gen["prompts"] += len(prompts)
        return out

    @property
    def likelihood_judge(self):
        return getattr(self.inner, "likelihood_judge", False)

    def loglikelihood(self, prompts, continuations):
        t0 = time.perf_counter()
        out = self.inner.loglikelihood(prompts, continuations)
        self.jud["seconds"] += time.perf_counter() - t0
        self.jud["calls"] += 1
        self.jud["prompts"] += len(prompts)
        return out

    def judge(self, prompts, choices):
        t0 = time.perf_counter()
        out = self.inner.judge(prompts, choices)
        self.jud["seconds"] += time.perf_counter() - t0
        self.jud["calls"] += 1
        self.jud["prompts"] += len(prompts)
        return out


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def batched_vs_single(llm: Any, passages: list[str], n: int) -> dict[str, float]:
    from adaptrank.core.prompts import QUERYGEN_TYPED, pick_question_types, querygen_typed_prompt

    prompts = [querygen_typed_prompt(p, pick_question_types(p, 1, "medical")[0]) for p in passages[:n]]
    kw = QUERYGEN_TYPED.generate_kwargs()
    llm.generate(prompts[:2], **kw)  # warm-up
    s = llm.stats
    tok0, t0 = s.generated_tokens, time.perf_counter()
    batched = llm.generate(prompts, batch_size=len(prompts), **kw)
    t_b, tok_b = time.perf_counter() - t0, s.generated_tokens - tok0
    tok0, t0 = s.generated_tokens, time.perf_counter()
    single = [llm.generate([p], **kw)[0] for p in prompts]
    t_s, tok_s = time.perf_counter() - t0, s.generated_tokens - tok0
    same = sum(a == b for a, b in zip(batched, single, strict=False))
    return {
        "prompts": len(prompts),
        "batched_s": t_b,
        "single_s": t_s,
        "batched_tok": tok_b,
        "single_tok": tok_s,
        "batched_tps": tok_b / t_b,
        "single_tps": tok_s / t_s,
        "ratio": t_s / t_b,
        "identical": same,
        "example": batched[0],
    }


def _auc(scored: list[tuple[float, bool]]) -> float | None:
    pos = [p for p, t in scored if t]
    neg = [p for p, t in scored if not t]
    if not pos or not neg:
        return None
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


def _top1(scored: list[tuple[float, bool]], groups: list[int]) -> float:
    """Share of questions whose true answer gets the highest score among its candidates."""
    best: dict[int, tuple[float, bool]] = {}
    for (p, t), g in zip(scored, groups, strict=False):
        if g not in best or p > best[g][0]:
            best[g] = (p, t)
    return sum(t for _, t in best.values()) / max(1, len(best))


def judge_accuracy(
    llm: LLM,
    data: Any,
    doc_ids: list[str],
    n_questions: int,
    n_neg: int,
    settings: Any,
    seed: int,
    methods: list[str],
    margin: float = 0.3,
) -> dict[str, Any]:
    """Real questions with their true answer and mined negatives, judged against the qrels."""
    from adaptrank.training.corpus import Corpus, CorpusPassage
    from adaptrank.training.labeling import judge_pairs, likelihood_verdicts
    from adaptrank.training.mining import CandidateMiner

    chosen = set(doc_ids)
    questions = [(qid, q) for qid, q in data.queries.items() if any(d in chosen for d in data.qrels.get(qid, {}))]
    random.Random(seed).shuffle(questions)
    questions = questions[:n_questions]
    passages = [CorpusPassage(id=d, doc_id=d, text=data.doc_text(d)) for d in data.corpus]
    miner = CandidateMiner(Corpus("beir", "medquad", passages), settings, depth=n_neg, dense="off")
    pairs, truth, groups, own = [], [], [], []
    for g, (qid, q) in enumerate(questions):
        rel = {d for d, grade in data.qrels[qid].items() if grade > 0}
        true_doc = next(d for d in data.qrels[qid] if d in chosen)
        [cands] = miner.mine([q], [true_doc])
        for text, is_rel in [(data.doc_text(true_doc), True)] + [(c.text, c.id in rel) for c in cands[:n_neg]]:
            pairs.append((q, text))
            truth.append(is_rel)
            groups.append(g)
            own.append(data.doc_text(true_doc))
    out: dict[str, Any] = {"questions": len(questions), "pairs": len(pairs), "positives": sum(truth)}
    if "choice" in methods:
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        verdicts = judge_pairs(llm, pairs, counts)  # type: ignore[arg-type]
        tp = fp = tn = fn = 0
        scored = []
        for v, t in zip(verdicts, truth, strict=False):
            label, p = v if v is not None else ("no", None)
            yes = label == "yes"
            tp += yes and t
            fp += yes and not t
            tn += (not yes) and (not t)
            fn += (not yes) and t
            scored.append((p if p is not None else 0.0, t))
        n = len(truth)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out["choice"] = {
            "seconds": time.perf_counter() - t0,
            "accuracy": (tp + tn) / n,
            "always_no": (fp + tn) / n,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "auc": _auc(scored),
            "top1": _top1(scored, groups),
            "p_yes_pos": sum(p for p, t in scored if t) / max(1, sum(truth)),
            "p_yes_neg": sum(p for p, t in scored if not t) / max(1, len(truth) - sum(truth)),
        }
    if "likelihood" in methods and hasattr(llm, "loglikelihood"):
        t0 = time.perf_counter()
        verdicts = likelihood_verdicts(llm, pairs, own, margin=margin, temperature=0.25)
        scored = [(p, t) for (_, p), t in zip(verdicts, truth, strict=False)]
        negs = [
            (label, t) for (label, _), t, (q, text), o in zip(verdicts, truth, pairs, own, strict=False) if text != o
        ]
        out["likelihood"] = {
            "seconds": time.perf_counter() - t0,
            "auc": _auc(scored),
            "top1": _top1(scored, groups),
            # the pipeline's rule (margin), with the true answer as the own passage: negatives flagged relevant
            "negatives_flagged": sum(label == "yes" and not t for label, t in negs)
            / max(1, sum(not t for _, t in negs)),
            "positives_flagged": sum(label == "yes" and t for label, t in negs),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--docs", type=int, default=200, help="documents for the pipeline run")
    ap.add_argument("--k", type=int, default=2, help="queries per document")
    ap.add_argument("--negatives", type=int, default=7)
    ap.add_argument("--judge-depth", type=int, default=None)
    ap.add_argument("--batch-documents", type=int, default=16)
    ap.add_argument("--ratio-prompts", type=int, default=16, help="prompts for batched vs one-at-a-time")
    ap.add_argument("--judge-questions", type=int, default=200, help="real questions for the judge's accuracy")
    ap.add_argument("--judge-negatives", type=int, default=4, help="mined negatives per real question")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--judge-methods", default="choice,likelihood", help="judges to evaluate in [3]")
    ap.add_argument("--judge-method", default="auto", help="the pipeline's judge: auto | choice | likelihood")
    ap.add_argument("--judge-margin", type=float, default=0.3, help="likelihood judge margin (nats/token)")
    args = ap.parse_args()

    from adaptrank.core.beir import load_beir
    from adaptrank.core.llm.factory import get_llm
    from adaptrank.core.settings import Settings
    from adaptrank.training.corpus import load_corpus, sample_documents
    from adaptrank.training.generate import generate_dataset

    print(f"machine: {os.cpu_count()} CPUs, load average at start {load()} (shared with other work)")
    home = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    settings = Settings(home=home, llm_backend=args.backend, llm_model=args.model)

    t0 = time.perf_counter()
    inner = get_llm(settings)
    print(
        f"LLM: {inner.name} loaded in {time.perf_counter() - t0:.1f} s"
        + (f" (dtype {inner.dtype}, {inner.threads} torch threads)" if hasattr(inner, "dtype") else "")
    )

    corpus = load_corpus(settings, "beir", path=args.data, restrict_paths=False)
    doc_ids = sample_documents(corpus, args.docs, args.seed)
    passages = [corpus.by_doc[d][0].text for d in doc_ids]

    # 1. batched vs one at a time -----------------------------------------------------------------
    r = batched_vs_single(inner, passages, args.ratio_prompts)
    print(f"\n[1] batched vs one-at-a-time, {r['prompts']} query-generation prompts")
    print(
        f"  batched:        {r['batched_s']:.1f} s, {r['batched_tok']} tokens, {r['batched_tps']:.1f} generated tokens/s"
    )
    print(
        f"  one at a time:  {r['single_s']:.1f} s, {r['single_tok']} tokens, {r['single_tps']:.1f} generated tokens/s"
    )
    print(f"  identical outputs: {r['identical']}/{r['prompts']}; example: {r['example']!r}")
    print(f"  ratio: {r['ratio']:.2f}  (target >= 3)")

    # 2. the pipeline ----------------------------------------------------------------------------------
    if not args.skip_pipeline:
        llm = Metered(inner)
        inner.stats.reset()
        t0 = time.perf_counter()
        ref = generate_dataset(
            {
                "source": "beir",
                "path": args.data,
                "output_name": "bench",
                "max_documents": args.docs,
                "queries_per_document": args.k,
                "negatives": args.negatives,
                "judge_depth": args.judge_depth,
                "question_types": "medical",
                "dense": "off",
                "batch_documents": args.batch_documents,
                "seed": args.seed,
                "judge_method": args.judge_method,
                "judge_margin": args.judge_margin,
            },
            settings,
            llm=llm,
            restrict_paths=False,
            progress=lambda d, t, m: print(f"  ... {m}", file=sys.stderr) if t and int(d) % 32 == 0 else None,
        )
        wall = time.perf_counter() - t0
        card = ref.card
        print(
            f"\n[2] pipeline on {args.docs} documents of {Path(args.data).name} "
            f"(k={args.k}, {args.negatives} negatives, judge on, BM25 mining over {len(corpus.passages)} passages)"
        )
        print(f"  wall {wall:.0f} s -> {args.docs / wall * 60:.1f} documents/min")
        print(
            f"  query generation: {llm.gen['prompts']} prompts, {llm.gen['tokens']} tokens in {llm.gen['seconds']:.0f} s "
            f"-> {llm.gen['tokens'] / max(llm.gen['seconds'], 1e-9):.1f} generated tokens/s"
        )
        print(
            f"  judge: {llm.jud['prompts']} pairs in {llm.jud['seconds']:.0f} s -> "
            f"{llm.jud['prompts'] / max(llm.jud['seconds'], 1e-9):.2f} pairs/s"
        )
        print(f"  stage seconds: {card.seconds}")
        print(f"  counts: {card.counts}")
        print(f"  skipped: {card.skipped}")
        print(f"  labels: {card.label_stats}")
        groups = ref.path / "train.jsonl"
        print(f"  dataset: {ref.path} ; first group: {groups.read_text().splitlines()[0][:300]}")

    # 3. judge accuracy on real questions ---------------------------------------------------------------
    data = load_beir(args.data)
    acc = judge_accuracy(
        inner,
        data,
        doc_ids,
        args.judge_questions,
        args.judge_negatives,
        settings,
        args.seed,
        args.judge_methods.split(","),
        args.judge_margin,
    )
    print(
        f"\n[3] judge on the real questions of those documents: {acc['questions']} questions x "
        f"(true answer + {args.judge_negatives} BM25-mined negatives) = {acc['pairs']} pairs, "
        f"{acc['positives']} relevant by the qrels"
    )
    if "choice" in acc:
        c = acc["choice"]
        print(
            f"  yes/no judge ({c['seconds']:.0f} s): accuracy {c['accuracy']:.3f} (always 'no': {c['always_no']:.3f}); "
            f"positives precision {c['precision']:.3f} recall {c['recall']:.3f} F1 {c['f1']:.3f}"
        )
        print(
            f"    p(yes) positives {c['p_yes_pos']:.3f} negatives {c['p_yes_neg']:.3f}; ROC AUC "
            f"{c['auc'] if c['auc'] is None else round(c['auc'], 3)}; true answer ranked first {c['top1']:.3f} "
            f"(random {1 / (1 + args.judge_negatives):.3f})"
        )
    if "likelihood" in acc:
        lk = acc["likelihood"]
        print(
            f"  query-likelihood judge ({lk['seconds']:.0f} s): ROC AUC {lk['auc']:.3f}; true answer ranked first "
            f"{lk['top1']:.3f}; mined negatives it would call relevant (pipeline rule, margin {args.judge_margin}): {lk['negatives_flagged']:.3f}"
        )
    print(f"\nload average at end {load()}")


if __name__ == "__main__":
    main()
