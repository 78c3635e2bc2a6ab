"""A team's real queries (a search log), labelled without people.

Real queries are the best evidence of how a team asks: their shapes ("What are the genetic changes
related to X?"), their vocabulary, what they ask about. Each is mined like a generated query (BM25 +
dense over the corpus) and its candidates are labelled by a *teacher* — the zero-shot scorer's
cosine and the LLM's query likelihood log p(query | passage) (or, for backends without likelihoods,
the judge's log-odds of "yes"), each z-normalised over the query's candidates and summed (the two
err differently; docs/finetuning.md). The teacher's best candidate is the positive; candidates
close to it are ambiguous and left out; the rest are hard negatives. The labelled log serves:

* as **dev queries** (the default): the promotion gate reads them as queries people wrote;
* as **training queries** of their own (``log_train``, off by default): the teacher is right for
  only 65-75% of them, and on conditions the log does not cover they cost more than they add
  (docs/finetuning.md);
* as **style examples** for query generation (``log_examples``, off by default): a few (passage,
  query) pairs from the labelled log replace the generic few-shot turns, so generated queries take
  the log's shapes. A 135M LLM copies the shapes and loses what made them specific (docs/generation.md).

A log is a ``.txt`` file (one query per line) or ``.jsonl`` (``text`` or ``query`` field).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLM
from adaptrank.core.paths import Roots, inside_roots
from adaptrank.core.prompts import likelihood_prompt
from adaptrank.training.dataset import Group
from adaptrank.training.mining import Candidate, CandidateMiner
from adaptrank.training.querygen import normalize

MAX_QUERIES = 100_000
MAX_QUERY_CHARS = 500


def read_queries(path: str | Path, roots: Roots = None, limit: int = MAX_QUERIES) -> list[str]:
    """The log's distinct queries in file order (blank lines and exact repeats dropped)."""
    p = inside_roots(path, roots, "queries")
    if not p.is_file():
        raise InputError("queries", f"{str(path)!r} is not a file (one query per line, or JSONL with a 'text' field)")
    out: dict[str, None] = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if p.suffix in (".jsonl", ".json", ".ndjson"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError("queries", f"{p} line {n} is not valid JSON: {exc.msg}") from None
                text = row.get("text", row.get("query")) if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise InputError("queries", f"{p} line {n} has no string 'text' or 'query' field")
                line = text.strip()
            if len(line) > MAX_QUERY_CHARS:
                raise InputError("queries", f"{p} line {n} has {len(line)} characters; the limit is {MAX_QUERY_CHARS}")
            if line:
                out.setdefault(" ".join(line.split()), None)
            if len(out) > limit:
                raise InputError("queries", f"{p} holds more than {limit} distinct queries")
    if not out:
        raise InputError("queries", f"{p} holds no queries")
    return list(out)


@dataclass
class Teacher:
    """Scores (query, candidates) as z(cos) + z(log-likelihood), each over the query's candidates."""

    llm: LLM
    embed: Any  # query texts -> unit vectors (the zero-shot scorer's tower)
    embed_passages: Any = None  # passage texts -> unit vectors (default: ``embed``); e.g. cached ones
    llm_weight: float = 1.0

    def llm_scores(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """log p(query | passage) where the backend scores likelihoods, else the judge's log-odds of
        "yes" (capable LLMs behind openai/vllm answer yes/no well)."""
        if hasattr(self.llm, "loglikelihood"):
            return np.asarray(self.llm.loglikelihood([likelihood_prompt(c) for _, c in pairs], [q for q, _ in pairs]))
        from adaptrank.training.labeling import judge_pairs

        verdicts = judge_pairs(self.llm, pairs, Counter())
        p = np.asarray([0.5 if v is None else (v[1] if v[1] is not None else float(v[0] == "yes")) for v in verdicts])
        p = np.clip(p, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))

    def scores(self, queries: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        pairs = [(q, c) for q, cs in zip(queries, candidates, strict=True) for c in cs]
        if not pairs:
            return [np.zeros(0) for _ in queries]
        lls = self.llm_scores(pairs)
        texts = list(dict.fromkeys(c for _, c in pairs))
        qv = self.embed(list(queries))
        pv = dict(zip(texts, (self.embed_passages or self.embed)(texts), strict=True))
        out, pos = [], 0
        for i, cs in enumerate(candidates):
            cos = np.asarray([float(qv[i] @ pv[c]) for c in cs])
            ll = lls[pos : pos + len(cs)]
            pos += len(cs)
            out.append(_z(cos) + self.llm_weight * _z(ll))
        return out


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-9 else x - x.mean()


def label_queries(
    queries: Sequence[str],
    miner: CandidateMiner,
    teacher: Teacher,
    *,
    negatives: int = 7,
    depth: int = 5,
    margin: float = 0.5,
    min_margin: float = 0.0,
) -> tuple[list[Group], Counter]:
    """One group per query whose teacher-best candidate stands out: positive = that candidate;
    candidates within ``margin`` (teacher units) of it are ambiguous and skipped; the rest of the
    mined list, in retrieval order, are the hard negatives. A query whose best candidate beats the
    runner-up by less than ``min_margin`` is left out ("unsure"): the teacher is wrong too often
    there, and a wrong positive costs more than a query is worth (docs/generation.md)."""
    counts: Counter = Counter()
    mined = miner.mine(list(queries), [None] * len(queries))  # type: ignore[list-item]
    judged = [cands[:depth] for cands in mined]
    scores = teacher.scores(queries, [[c.text for c in cs] for cs in judged])
    groups: list[Group] = []
    for q, cands, top, s in zip(queries, mined, judged, scores, strict=True):
        if len(top) < 2:
            counts["too_few_candidates"] += 1
            continue
        best = int(np.argmax(s))
        ordered = np.sort(s)
        top_margin = float(ordered[-1] - ordered[-2])
        if top_margin < min_margin:
            counts["unsure"] += 1
            continue
        chosen: Candidate = top[best]
        close = {top[j].id for j in range(len(top)) if j != best and s[j] > s[best] - margin}
        negs = [c for c in cands if c.id != chosen.id and c.id not in close][:negatives]
        counts["ambiguous"] += len(close)
        if not negs:
            counts["no_negatives"] += 1
            continue
        groups.append(
            Group(
                query=q,
                positive=chosen.text,
                negatives=[c.text for c in negs],
                negative_ids=[c.id for c in negs],
                doc_id=chosen.doc_id,
                query_type="log",
                meta={
                    "passage_id": chosen.id,
                    "source": "query_log",
                    "teacher_margin": round(top_margin, 4),
                },
            )
        )
        counts["labelled"] += 1
    return groups, counts


def style_examples(groups: Sequence[Group], n: int = 3, max_chars: int = 400) -> tuple[tuple[str, str], ...]:
    """``n`` (passage, query) few-shot turns from labelled log queries: the most confidently labelled
    ones, one per distinct query shape (first three words), so the examples show variety."""
    ranked = sorted(groups, key=lambda g: -float(g.meta.get("teacher_margin", 0.0)))
    out, shapes = [], set()
    for g in ranked:
        shape = " ".join(normalize(g.query).split()[:3])
        if shape in shapes:
            continue
        shapes.add(shape)
        passage = g.positive if len(g.positive) <= max_chars else g.positive[:max_chars].rsplit(" ", 1)[0] + " ..."
        out.append((f"Passage: {passage}", g.query))
        if len(out) == n:
            break
    return tuple(out)
