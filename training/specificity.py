"""Is a generated query specific to its passage, or only to its document's subject?

A small LLM asked for a question about one passage of a document often asks about the document's
*subject* instead: "What causes alkaptonuria?" written from the passage on how common alkaptonuria
is. Trained on, that query teaches the reranker the wrong passage, and the passage that does answer
it (the causes) becomes its hard negative — exactly backwards. (On medquad-dev's GHR collection,
leaving such queries out of a training set by their known sections raised the gain on real questions
from +0.06 to +0.11 MRR@10; docs/generation.md.)

The test needs no labels and no model. A passage's *siblings* are the passages about the same
subject: the other chunks of its document and the documents with the same title. A query's
*aspect words* are its words minus the subject's (the title) and stopwords, compared by prefix so
"causes", "caused" and "cause" meet. The query is specific when its own passage shares at least one
aspect word and no sibling shares more. A passage without siblings passes (nothing to confuse it
with), and so does a query whose source passage is not in the index.

Why lexical: the learned scorers cannot judge this. The zero-shot bi-encoder ranks by subject (a
filter built on it keeps exactly the queries it already gets right, so nothing is learned), and the
embedded LLM's query likelihood favours short passages whatever they say (both measured in
docs/generation.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from adaptrank.training.corpus import CorpusPassage

_WORD = re.compile(r"[a-z0-9]+")
PREFIX = 5  # "causes"/"caused"/"cause" -> "cause"; "inherited"/"inheritance" -> "inher"


#: question words: they shape a question but say nothing about which passage answers it
QUESTION_WORDS = frozenset(
    ("what how which why when where who whom whose does did can could should would will are is was were there").split()
)


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | QUESTION_WORDS


class Specificity:
    """Built once per corpus; ``__call__(query, passage_id)`` says whether the query is specific."""

    def __init__(self, passages: Sequence[CorpusPassage], ranked: bool = False) -> None:
        """``ranked``: also reject a query when a sibling is more about its aspect words than its own
        passage (:meth:`best_sibling`), not only when a sibling shares more of them."""
        self.ranked = ranked
        self._stop = _stopwords()
        self.group: dict[str, str] = {}
        self.stems: dict[str, frozenset[str]] = {}
        self.subject: dict[str, frozenset[str]] = {}
        self.tf: dict[str, Counter[str]] = {}
        members: dict[str, list[str]] = defaultdict(list)
        df: Counter[str] = Counter()
        for p in passages:  # the subject: the title where there is one, else the document itself
            key = f"title:{p.title.strip().lower()}" if p.title.strip() else f"doc:{p.doc_id}"
            self.group[p.id] = key
            members[key].append(p.id)
            self.tf[p.id] = Counter(self._tokens(p.text))
            self.stems[p.id] = frozenset(self.tf[p.id])
            self.subject[p.id] = self._stems(p.title)
            df.update(self.stems[p.id])
        self.siblings = {pid: members[key] for pid, key in self.group.items()}
        n = max(len(self.tf), 1)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
        self.length = {pid: sum(tf.values()) for pid, tf in self.tf.items()}
        self.avg_length = sum(self.length.values()) / n if self.length else 1.0

    def _tokens(self, text: str) -> list[str]:
        return [w[:PREFIX] for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in self._stop]

    def _stems(self, text: str) -> frozenset[str]:
        return frozenset(self._tokens(text))

    def aspect_score(self, aspect: frozenset[str], passage_id: str, k1: float = 1.2, b: float = 0.75) -> float:
        """BM25 of the aspect words alone against one passage: how much it is *about* the aspect
        (how often, in how short a text), where the set test only sees whether a word occurs."""
        tf, norm = self.tf[passage_id], k1 * (1 - b + b * self.length[passage_id] / self.avg_length)
        return sum(self.idf.get(w, 0.0) * tf[w] * (k1 + 1) / (tf[w] + norm) for w in aspect if tf[w])

    def best_sibling(self, query: str, passage_id: str) -> str | None:
        """The sibling whose aspect score beats the query's own passage, if one does (else None)."""
        siblings = self.siblings.get(passage_id) or []
        aspect = self.aspect(query, passage_id)
        if len(siblings) < 2 or not aspect:
            return None
        scores = {s: self.aspect_score(aspect, s) for s in siblings}
        best = max((s for s in siblings if s != passage_id), key=scores.__getitem__)
        return best if scores[best] > scores[passage_id] else None

    def aspect(self, query: str, passage_id: str) -> frozenset[str]:
        return self._stems(query) - self.subject.get(passage_id, frozenset())

    def __call__(self, query: str, passage_id: str) -> bool:
        return self.verdict(query, passage_id) is None

    def verdict(self, query: str, passage_id: str) -> str | None:
        """None when the query is specific to its passage, else why not (a skip counter's name)."""
        siblings = self.siblings.get(passage_id)
        if not siblings or len(siblings) < 2:
            return None
        aspect = self.aspect(query, passage_id)
        own = len(aspect & self.stems[passage_id])
        if own == 0 or any(len(aspect & self.stems[s]) > own for s in siblings):
            return "not_specific"  # nothing points at this passage, or a sibling shares more of it
        if self.ranked and self.best_sibling(query, passage_id) is not None:
            return "sibling_more_specific"
        return None
