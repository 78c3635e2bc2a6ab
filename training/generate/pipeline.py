"""The pipeline, batch by batch: sample documents, write queries, mine candidates, judge them, and
write the dataset (see the package docstring)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adaptrank.core.errors import AdaptRankError, Cancelled
from adaptrank.core.llm.base import LLM
from adaptrank.core.progress import StepProgress
from adaptrank.core.prompts import JUDGE_LIKELIHOOD, JUDGE_RELEVANCE, QUERYGEN_FOCUSED, get_template
from adaptrank.core.settings import Settings
from adaptrank.core.vectors import embed_texts
from adaptrank.training.corpus import Corpus, load_corpus, sample_documents
from adaptrank.training.dataset import DatasetRef, DatasetStore, Group, split_by_document
from adaptrank.training.generate.budget import TimeBudget
from adaptrank.training.generate.checkpoint import Checkpoint
from adaptrank.training.generate.params import GenerateParams
from adaptrank.training.headings import CORPUS_QUESTION, opening_question
from adaptrank.training.labeling import label_candidates, resolve_judge_method
from adaptrank.training.mining import CandidateMiner
from adaptrank.training.querygen import GeneratedQuery, Grounding, generate_queries, normalize
from adaptrank.training.specificity import Specificity

#: counters of the labelling step (the card reports them as label statistics, not as skipped queries)
LABEL_COUNTERS = ("judged", "judged_relevant", "unjudged_negatives")


def _llms(params: GenerateParams, settings: Settings, llm: LLM | None, judge_llm: LLM | None) -> tuple[LLM, LLM | None]:
    from adaptrank.core.llm.factory import get_llm

    if llm is None:
        llm = get_llm(settings, params.llm_backend, params.llm_model)
    if not params.judge:
        return llm, None
    if judge_llm is None:
        same = (params.judge_backend in (None, params.llm_backend)) and (params.judge_model in (None, params.llm_model))
        judge_llm = llm if same else get_llm(settings, params.judge_backend or params.llm_backend, params.judge_model)
    return llm, judge_llm


def generate_dataset(
    params: GenerateParams | dict[str, Any],
    settings: Settings,
    *,
    llm: LLM | None = None,
    judge_llm: LLM | None = None,
    progress: StepProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    docstore: Any = None,
    restrict_paths: bool = True,
) -> DatasetRef:
    """Run the pipeline and write a new dataset version; returns its reference."""
    params = params if isinstance(params, GenerateParams) else GenerateParams.model_validate(params)
    t_start = time.perf_counter()
    seconds: Counter = Counter()

    def report(done: float, total: float | None, message: str) -> None:
        if progress is not None:
            progress(done, total, message)

    report(0, None, "reading the corpus")
    t0 = time.perf_counter()
    corpus: Corpus = load_corpus(
        settings,
        params.source,
        collection=params.collection,
        path=params.path,
        restrict_paths=restrict_paths,
        chunk_tokens=params.chunk_tokens,
        docstore=docstore,
    )
    doc_ids = sample_documents(corpus, params.max_documents, params.seed)
    seconds["corpus"] += time.perf_counter() - t0

    ckpt = Checkpoint(checkpoint_dir, params.fingerprint())
    # A seeded random processing order: where a time budget stops the run, the documents done are a
    # random sample of the sampled ones, not the first ids in sorted order.
    order = list(doc_ids)
    random.Random(params.seed).shuffle(order)
    todo = [d for d in order if d not in ckpt.done]
    total = len(doc_ids)
    report(
        total - len(todo),
        total,
        f"{total - len(todo)} of {total} documents done (resumed)" if ckpt.done else "indexing candidates",
    )

    gen_llm, judge = _llms(params, settings, llm, judge_llm)
    retries_before = gen_llm.stats.retries + (judge.stats.retries if judge is not None and judge is not gen_llm else 0)

    if todo:
        t0 = time.perf_counter()
        grounding = Grounding([p.text for p in corpus.passages]) if params.grounding else None
        specificity = Specificity(corpus.passages, ranked=params.specific_ranked) if params.specific else None
        miner = CandidateMiner(
            corpus, settings, depth=params.mining_depth, dense=params.dense, docstore=docstore, cache_dir=checkpoint_dir
        )
        seconds["index"] += time.perf_counter() - t0
        mining_info = miner.describe()
    else:
        mining_info = {}

    log_groups: list[Group] = []
    log_counts: Counter = Counter()
    examples: tuple[tuple[str, str], ...] | None = None
    if params.queries:
        t0 = time.perf_counter()
        report(total - len(todo), total, "labelling the query log")
        log_groups, log_counts, examples = _query_log(
            params, settings, corpus, ckpt, judge or gen_llm, restrict_paths, docstore, checkpoint_dir
        )
        seconds["query_log"] += time.perf_counter() - t0
        if not params.log_examples:
            examples = None  # generation keeps its own prompts
    seen_queries: set[str] = {q for row in ckpt.done.values() for q in row.get("normalized", [])}
    seen_queries.update(normalize(g.query) for g in log_groups)  # generated copies of log queries add nothing
    position = {d: i for i, d in enumerate(doc_ids)}
    budget = TimeBudget(
        params.max_minutes, t_start, [sum(r["seconds"].values()) for r in ckpt.done.values() if r.get("seconds")]
    )
    stopped_at: int | None = None
    for lo in range(0, len(todo), params.batch_documents):
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled after {total - len(todo) + lo} of {total} documents")
        if not budget.fits_next():
            stopped_at = total - len(todo) + lo
            report(
                stopped_at,
                total,
                f"time budget ({params.max_minutes:g} min) reached: {stopped_at} of {total} documents",
            )
            break
        t_batch = time.perf_counter()
        batch = todo[lo : lo + params.batch_documents]
        rows = _process_batch(
            batch,
            corpus,
            params,
            gen_llm,
            judge,
            miner,
            seen_queries,
            [position[d] for d in batch],
            grounding,
            examples,
            specificity,
        )
        ckpt.add(rows)
        budget.batch_took(time.perf_counter() - t_batch)
        done = total - len(todo) + lo + len(batch)
        report(done, total, f"{done} of {total} documents")

    # -- assemble (in sample order, whatever order batches ran in) -----------------------------
    groups: list[Group] = []
    counts: Counter = Counter()
    done_ids = [d for d in doc_ids if d in ckpt.done]  # all of them, unless the time budget stopped the run
    for d in done_ids:
        row = ckpt.done[d]
        groups.extend(Group.model_validate(g) for g in row["groups"])
        counts.update(row["counts"])
        seconds.update(row.get("seconds", {}))
    if params.log_train:
        groups.extend(log_groups)
    # without log_train the generated groups split as if there were no log: the same training data either way
    train, dev = split_by_document(groups, params.dev_fraction, params.seed)
    if log_groups and not params.log_train:
        dev += log_for_dev(train, log_groups, log_counts)
    skipped = {
        k: v for k, v in counts.items() if k not in ("prompts", "kept", "groups", "corpus_questions", *LABEL_COUNTERS)
    }
    if not groups:
        raise AdaptRankError(
            f"no training groups from {total} documents of {corpus.location}: queries kept {counts.get('kept', 0)}, "
            f"skipped {dict(skipped)}. Check the LLM ({gen_llm.name}) and the source."
        )
    seconds["total"] = time.perf_counter() - t_start
    judged = counts.get("judged", 0)
    judge_method = resolve_judge_method(judge, params.judge_method) if judge is not None else None
    card = {
        "source": {**corpus.describe(), "sampled_documents": total},
        "llm": gen_llm.name,
        "judge": judge.name if judge is not None else None,
        "prompt_versions": {
            "querygen": f"{QUERYGEN_FOCUSED.id}+log" if examples else get_template(params.template).id,
            **(
                {"judge": (JUDGE_LIKELIHOOD if judge_method == "likelihood" else JUDGE_RELEVANCE).id}
                if judge is not None
                else {}
            ),
        },
        "parameters": params.model_dump(),
        "counts": {
            "documents_sampled": total,
            "documents_done": len(done_ids),
            "query_prompts": counts.get("prompts", 0),
            "queries_kept": counts.get("kept", 0),
            "corpus_questions": counts.get("corpus_questions", 0),
            **({"log_queries_labelled": len(log_groups)} if params.queries else {}),
        },
        "label_stats": {
            "judge_method": judge_method,
            "judged_pairs": judged,
            "judged_relevant": counts.get("judged_relevant", 0),
            "judged_relevant_rate": round(counts.get("judged_relevant", 0) / judged, 4) if judged else None,
            "unjudged_negatives": counts.get("unjudged_negatives", 0),
        },
        "skipped": skipped,
        "retried": gen_llm.stats.retries
        + (judge.stats.retries if judge is not None and judge is not gen_llm else 0)
        - retries_before,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "extra": {
            **(
                {"time_budget": {"max_minutes": params.max_minutes, "stopped_after_documents": stopped_at}}
                if params.max_minutes
                else {}
            ),
            "mining": mining_info,
            "llm_stats": gen_llm.stats.as_dict(),
            **(
                {
                    "query_log": {
                        **dict(log_counts),
                        **({"style_examples": [q for _, q in examples]} if examples is not None else {}),
                    }
                }
                if params.queries
                else {}
            ),
        },
    }
    report(total, total, "writing the dataset")
    return DatasetStore(settings).write(params.output_name, train=train, dev=dev, card=card)


def log_for_dev(train: list[Group], log_groups: list[Group], counts: Counter) -> list[Group]:
    """The labelled log's groups that join the dev split, where the promotion gate reads them as
    people-written queries; a log group whose document is in training is left out (a split holds
    whole documents)."""
    train_docs = {g.doc_id for g in train}
    kept = [g for g in log_groups if g.doc_id not in train_docs]
    counts["dev_groups"] = len(kept)
    counts["left_out_document_in_train"] = len(log_groups) - len(kept)
    return kept


def _process_batch(
    batch: list[str],
    corpus: Corpus,
    params: GenerateParams,
    llm: LLM,
    judge: LLM | None,
    miner: CandidateMiner,
    seen: set[str],
    offsets: list[int],
    grounding: Grounding | None = None,
    examples: tuple[tuple[str, str], ...] | None = None,
    specificity: Specificity | None = None,
) -> list[dict[str, Any]]:
    """Generate, mine and label one batch of documents; one checkpoint row per document."""
    t0 = time.perf_counter()
    docs = [corpus.by_doc[d] for d in batch]
    # Per-document dedupe state must not depend on the batch: check across-run duplicates
    # against the queries of documents *before* this one only (``seen`` grows in doc order).
    queries, qcounts = generate_queries(
        llm,
        docs,
        params.queries_per_document,
        template=params.template,
        type_set=params.question_types,
        seen=seen,
        doc_offsets=offsets,
        grounding=grounding,
        examples=examples,
        specificity=specificity,
    )
    if params.corpus_questions:
        queries += _corpus_questions(docs, qcounts)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    candidates, source_ranks = miner.mine_with_source_ranks(
        [q.query for q in queries], [q.doc_id for q in queries], params.consistency_depth or 0
    )
    t_mine = time.perf_counter() - t0
    rows: dict[str, dict[str, Any]] = {
        d: {"doc_id": d, "groups": [], "normalized": [], "counts": Counter()} for d in batch
    }
    for q in queries:  # every generated query counts for later duplicate checks, kept or not
        rows[q.doc_id]["normalized"].append(normalize(q.query))
    if params.consistency_depth:
        keep = [i for i, r in enumerate(source_ranks) if r is not None and r <= params.consistency_depth]
        for i in sorted(set(range(len(queries))) - set(keep)):
            rows[queries[i].doc_id]["counts"]["inconsistent"] += 1
        queries, candidates = [queries[i] for i in keep], [candidates[i] for i in keep]

    t0 = time.perf_counter()
    by_id = {p.id: p for ps in docs for p in ps}
    labeled, lcounts = label_candidates(
        judge,
        [q.query for q in queries],
        candidates,
        negatives=params.negatives,
        judge_depth=params.judge_depth,
        threshold=params.judge_threshold,
        method=params.judge_method,
        positives=[by_id[q.passage_id].text for q in queries],
        margin=params.judge_margin,
    )
    t_label = time.perf_counter() - t0

    # Batch-level counters are attributed to the batch's first document (sums stay exact).
    rows[batch[0]]["counts"].update(qcounts)
    rows[batch[0]]["counts"].update(lcounts)
    rows[batch[0]]["seconds"] = {"querygen": t_gen, "mining": t_mine, "labeling": t_label}
    for q, cands, lab in zip(queries, candidates, labeled, strict=True):
        row = rows[q.doc_id]
        if params.negatives > 0 and not lab.negatives:
            row["counts"]["no_negatives"] += 1
            continue
        group = Group(
            query=q.query,
            positive=by_id[q.passage_id].text,
            negatives=[c.text for c in lab.negatives],
            negative_ids=[c.id for c in lab.negatives],
            negative_scores=lab.negative_scores if judge is not None else [],
            extra_positives=[c.text for c in lab.extra_positives],
            doc_id=q.doc_id,
            query_type=q.query_type,
            meta={
                "passage_id": q.passage_id,
                "template": q.template,
                "extra_positive_ids": [c.id for c in lab.extra_positives],
                "mined": len(cands),
                "judged": lab.judged,
            },
        )
        row["groups"].append(group.model_dump())
        row["counts"]["groups"] += 1
    return _finish_rows(rows, batch, Counter())


def _corpus_questions(docs: list[list[Any]], counts: Counter) -> list[GeneratedQuery]:
    """The questions the batch's passages open with (training/headings.py), as queries of their
    passages (deduplicated within a document only, so the result does not depend on batching)."""
    out = []
    for passages in docs:
        mine: set[str] = set()
        for p in passages:
            question = opening_question(p.text, p.title)
            key = normalize(question) if question is not None else None
            if key is None or key in mine:
                continue
            mine.add(key)
            out.append(GeneratedQuery(question, p.id, p.doc_id, "heading", CORPUS_QUESTION))
            counts["corpus_questions"] += 1
    return out


def _query_log(
    params: GenerateParams,
    settings: Settings,
    corpus: Corpus,
    ckpt: Checkpoint,
    llm: LLM,
    restrict_paths: bool,
    docstore: Any,
    checkpoint_dir: Path | None,
) -> tuple[list[Group], Counter, tuple[tuple[str, str], ...]]:
    """The log's labelled groups, counters and style examples (checkpointed: a resumed job reads them)."""
    from adaptrank.core.embeddings import embed_passages, shared_model
    from adaptrank.core.paths import allowed_roots
    from adaptrank.training.querylog import Teacher, label_queries, read_queries, style_examples

    saved = ckpt.folder / "query_log.json" if ckpt.folder is not None else None
    if saved is not None and saved.is_file():
        data = json.loads(saved.read_text())
        return (
            [Group.model_validate(g) for g in data["groups"]],
            Counter(data["counts"]),
            tuple(tuple(x) for x in data["examples"]),
        )  # type: ignore[misc]
    queries = read_queries(params.queries, allowed_roots(settings) if restrict_paths else None)[
        : params.max_log_queries
    ]
    miner = CandidateMiner(
        corpus, settings, depth=params.mining_depth, dense="on", docstore=docstore, cache_dir=checkpoint_dir
    )
    model = shared_model(settings.embedding_model, settings.device)
    teacher = Teacher(
        llm,
        lambda texts: embed_texts(model, texts),
        lambda texts: embed_passages(list(texts), settings.embedding_model, settings.device),  # the miner's, cached
    )
    groups, counts = label_queries(
        queries, miner, teacher, negatives=params.negatives, min_margin=params.log_min_margin
    )
    counts["log_queries"] = len(queries)
    examples = style_examples(groups)
    if saved is not None:
        tmp = saved.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "groups": [g.model_dump() for g in groups],
                    "counts": dict(counts),
                    "examples": [list(e) for e in examples],
                }
            )
        )
        tmp.replace(saved)
    return groups, counts, examples


def _finish_rows(rows: dict[str, dict[str, Any]], batch: list[str], batch_counts: Counter) -> list[dict[str, Any]]:
    """Batch counters go to the batch's first document (sums stay exact); plain dicts for JSON."""
    rows[batch[0]]["counts"].update(batch_counts)
    for d in batch:
        if not rows[d]["groups"]:
            rows[d]["counts"]["documents_without_groups"] += 1
        rows[d]["counts"] = dict(rows[d]["counts"])
    return [rows[d] for d in batch]
