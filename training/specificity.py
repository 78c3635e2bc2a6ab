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

import re
from collections import defaultdict
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

    def __init__(self, passages: Sequence[CorpusPassage]) -> None:
        self._stop = _stopwords()
        self.group: dict[str, str] = {}
        self.stems: dict[str, frozenset[str]] = {}
        self.subject: dict[str, frozenset[str]] = {}
        members: dict[str, list[str]] = defaultdict(list)
        for p in passages:  # the subject: the title where there is one, else the document itself
            key = f"title:{p.title.strip().lower()}" if p.title.strip() else f"doc:{p.doc_id}"
            self.group[p.id] = key
            members[key].append(p.id)
            self.stems[p.id] = self._stems(p.text)
            self.subject[p.id] = self._stems(p.title)
        self.siblings = {pid: members[key] for pid, key in self.group.items()}

    def _stems(self, text: str) -> frozenset[str]:
        return frozenset(w[:PREFIX] for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in self._stop)

    def aspect(self, query: str, passage_id: str) -> frozenset[str]:
        return self._stems(query) - self.subject.get(passage_id, frozenset())

    def __call__(self, query: str, passage_id: str) -> bool:
        siblings = self.siblings.get(passage_id)
        if not siblings or len(siblings) < 2:
            return True
        aspect = self.aspect(query, passage_id)
        own = len(aspect & self.stems[passage_id])
        if own == 0:
            return False  # nothing in the question points at this passage rather than its subject
        return all(len(aspect & self.stems[s]) <= own for s in siblings)
