"""BM25 over an in-memory list of texts, on ``bm25s`` (sparse-matrix BM25, fast to index).

Used for candidate mining, hybrid retrieval in the agent and the BM25 first stage of evaluation.
"""

from __future__ import annotations

import numpy as np


class BM25Index:
    def __init__(self, texts: list[str], ids: list[str] | None = None) -> None:
        import bm25s

        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 10) -> list[list[tuple[str, float]]]:
        import bm25s

        k = min(k, len(self.ids))
        if k == 0 or not queries:
            return [[] for _ in queries]
        # Query tokens as strings: the index maps them through its own vocabulary.
        tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
        if not any(tokens):
            return [[] for _ in queries]
        docs, scores = self._index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        out = []
        for row_docs, row_scores in zip(np.asarray(docs), np.asarray(scores), strict=True):
            out.append([(self.ids[int(d)], float(s)) for d, s in zip(row_docs, row_scores, strict=True) if s > 0])
        return out
