"""LLM labelling: the judge decides which mined candidates answer the query.

For each query the judge sees the top ``judge_depth`` mined candidates (constrained output:
``LLM.judge(prompts, ["yes", "no"])`` through ``core.prompts.JUDGE_RELEVANCE``). Candidates judged
relevant are *false negatives* of plain mining: they become extra positives and never negatives.
The rest of the mined list, in retrieval order, gives the hard negatives; each keeps the judge's
probability of "yes" where the backend exposes one (``negative_scores``).

Two ways to judge (``method``): ``choice`` asks the LLM "does the passage answer the query?"
(yes/no); ``likelihood`` compares log p(query | candidate) with log p(query | the query's own
passage) — query likelihood (UPR, Sachan et al. 2022), which the embedded 135M model does far
better than yes/no (on 200 real medquad-dev questions: ROC AUC 0.50 for yes/no vs 0.79 for
query likelihood; ``bench/generate.py``). ``auto`` picks likelihood for models that prefer it.

``judge=None`` turns the judge off: the top mined candidates are the negatives as they come (the
paper's ablation, and the fine-tuning comparison judge vs no judge).

A judge call that fails for a whole batch is retried item by item; items that still fail are
left out of both lists and counted (``judge_errors``), so one bad reply never poisons a group —
but when every item fails (the endpoint is down) the error is raised, not hidden.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLM, LLMError
from adaptrank.core.prompts import JUDGE_RELEVANCE, judge_prompt, likelihood_prompt
from adaptrank.training.mining import Candidate

CHOICES = list(JUDGE_RELEVANCE.choices or ("yes", "no"))


@dataclass
class Labeled:
    """The labelled candidates of one query."""

    extra_positives: list[Candidate] = field(default_factory=list)
    negatives: list[Candidate] = field(default_factory=list)
    negative_scores: list[float | None] = field(default_factory=list)
    judged: int = 0


def judge_pairs(judge: LLM, pairs: Sequence[tuple[str, str]], counts: Counter) -> list[tuple[str, float | None] | None]:
    """``(label, p_yes)`` per (query, passage), or None where the judge failed for that item."""
    if not pairs:
        return []
    prompts = [judge_prompt(q, p) for q, p in pairs]
    try:
        return list(judge.judge(prompts, CHOICES))
    except LLMError as batch_error:
        out: list[tuple[str, float | None] | None] = []
        for prompt in prompts:
            try:
                out.append(judge.judge([prompt], CHOICES)[0])
            except LLMError:
                out.append(None)
        failed = sum(1 for r in out if r is None)
        counts["judge_errors"] += failed
        if failed == len(out):
            raise LLMError(f"the judge failed on every item of a batch: {batch_error}") from None
        return out


def likelihood_verdicts(
    judge: LLM, pairs: Sequence[tuple[str, str]], positives: Sequence[str], margin: float, temperature: float
) -> list[tuple[str, float | None]]:
    """Query-likelihood verdicts for (query, candidate) pairs, ``positives[i]`` being pair i's
    query's own passage: a candidate is relevant when the LLM finds the query more likely given
    it than given the own passage by at least ``margin`` (mean log-probability per token; a
    negative margin is slack); the score is ``sigmoid((ll_candidate - ll_own) / temperature)``.
    One batched scoring call.

    The default margin, 0.3, was chosen on real medquad-dev questions that are not the benchmark's
    (how, and the figures: docs/generation.md, "Measured")."""
    refs = sorted({(q, pos) for (q, _), pos in zip(pairs, positives, strict=True)})
    prompts = [likelihood_prompt(p) for _, p in pairs] + [likelihood_prompt(pos) for _, pos in refs]
    continuations = [q for q, _ in pairs] + [q for q, _ in refs]
    lls = judge.loglikelihood(prompts, continuations)  # type: ignore[attr-defined]
    own = dict(zip(refs, lls[len(pairs) :], strict=True))
    out: list[tuple[str, float | None]] = []
    for ((q, _), pos), ll in zip(zip(pairs, positives, strict=True), lls[: len(pairs)], strict=True):
        delta = ll - own[(q, pos)]
        score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, delta / temperature))))
        out.append((CHOICES[0] if delta >= margin else CHOICES[1], score))
    return out


def resolve_judge_method(judge: LLM | None, method: str) -> str:
    """``auto``: query likelihood for models that prefer it (the embedded 135M LLM), else yes/no."""
    if method not in ("auto", "choice", "likelihood"):
        raise InputError("judge_method", f"{method!r} is not one of ['auto', 'choice', 'likelihood']")
    if method == "auto":
        return "likelihood" if judge is not None and getattr(judge, "likelihood_judge", False) else "choice"
    if method == "likelihood" and judge is not None and not hasattr(judge, "loglikelihood"):
        raise InputError("judge_method", f"{judge.name} cannot score likelihoods; use 'choice'")
    return method


def label_candidates(
    judge: LLM | None,
    queries: Sequence[str],
    candidates: Sequence[Sequence[Candidate]],
    *,
    negatives: int,
    judge_depth: int | None = None,
    threshold: float | None = None,
    method: str = "auto",
    positives: Sequence[str] | None = None,
    margin: float = 0.3,
    temperature: float = 0.25,
) -> tuple[list[Labeled], Counter]:
    """Label every query's candidates (one batched judge call for all of them).

    ``judge_depth`` (default ``negatives``): how many of the top candidates the judge reads;
    candidates below it can still fill the negatives, unjudged (score None).
    ``threshold``: when set and the judge exposes probabilities, "relevant" means
    ``p_yes >= threshold`` instead of the judge's argmax label.
    ``method``: ``choice`` (yes/no through ``LLM.judge``), ``likelihood`` (query likelihood
    against the query's own passage, ``positives[i]``; see :func:`likelihood_verdicts`) or
    ``auto``.
    """
    counts: Counter = Counter()
    depth = judge_depth if judge_depth is not None else negatives
    results = [Labeled() for _ in queries]
    if judge is None:
        for res, cands in zip(results, candidates, strict=True):
            res.negatives = list(cands[:negatives])
        return results, counts

    method = resolve_judge_method(judge, method)
    pairs, where, pair_positive = [], [], []
    for qi, (query, cands) in enumerate(zip(queries, candidates, strict=True)):
        for ci, cand in enumerate(cands[:depth]):
            pairs.append((query, cand.text))
            where.append((qi, ci))
            if positives is not None:
                pair_positive.append(positives[qi])
    if method == "likelihood":
        if positives is None:
            raise InputError("positives", "the likelihood judge needs each query's own passage")
        verdicts = likelihood_verdicts(judge, pairs, pair_positive, margin, temperature) if pairs else []
    else:
        verdicts = judge_pairs(judge, pairs, counts)
    labels: dict[tuple[int, int], tuple[str, float | None] | None] = dict(zip(where, verdicts, strict=True))

    for qi, (res, cands) in enumerate(zip(results, candidates, strict=True)):
        for ci, cand in enumerate(cands):
            if ci < depth:
                verdict = labels[(qi, ci)]
                if verdict is None:
                    continue  # the judge failed on it: neither positive nor negative
                label, p_yes = verdict
                res.judged += 1
                counts["judged"] += 1
                relevant = (
                    (p_yes >= threshold) if (threshold is not None and p_yes is not None) else label == CHOICES[0]
                )
                if relevant:
                    res.extra_positives.append(cand)
                    counts["judged_relevant"] += 1
                    continue
                if len(res.negatives) < negatives:
                    res.negatives.append(cand)
                    res.negative_scores.append(p_yes)
            elif len(res.negatives) < negatives:
                res.negatives.append(cand)
                res.negative_scores.append(None)
                counts["unjudged_negatives"] += 1
    return results, counts
