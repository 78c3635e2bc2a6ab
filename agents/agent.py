# Over 400 lines: the one agent loop (clean, decompose, retrieve, merge, rerank, follow-up, answer) in sync and async.
"""The decomposition agent: decompose -> retrieve per sub-query -> merge -> rerank -> (answer).

It follows "Question Decomposition for Retrieval-Augmented Generation" (2025): an LLM splits a
compound question into sub-questions; each (and the original) retrieves its own candidates; the
pools are merged and deduplicated by id; the merged pool is reranked against the *original*
question by the one scoring engine (:class:`adaptrank.core.engine.Reranker`). A sub-question
pulls in evidence the whole question's embedding misses, and the reranker judges it in context.

Every passage carries provenance (which queries found it, at which rank) and every stage is timed
into a :class:`~adaptrank.agents.results.Trace`. Optional: a follow-up round for sub-questions
whose candidates all missed the top (thin coverage), and an answer with citations when an LLM is
configured.

>>> agent = DecompositionAgent(reranker, llm=None)             # rule-based decomposition
>>> res = agent.run("What causes gout, and how is asthma treated?", ChromaRetriever(store, "docs"))
>>> [(p.id, p.score, [f.query_index for f in p.found_by]) for p in res.results]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adaptrank.agents.clean import Cleaned, clean_message
from adaptrank.agents.decompose import Decomposition, adecompose, rule_split
from adaptrank.agents.prompts import ANSWER, FOLLOW_UP
from adaptrank.agents.results import Answer, Passage, Provenance, SearchResult, Stage, Trace
from adaptrank.agents.retrieval import Retriever
from adaptrank.core.docstore import Hit
from adaptrank.core.engine import Reranker
from adaptrank.core.errors import InputError
from adaptrank.core.fusion import rrf_scores
from adaptrank.core.llm.base import LLM, LLMError
from adaptrank.core.llm.constraints import extract_json

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class AgentConfig:
    """Knobs with their defaults; every ``run`` argument overrides one of these."""

    top_n: int = 10
    k: int = 20  # candidates per query (the original and each sub-question)
    max_subquestions: int = 4
    clean: bool = True  # drop greetings, thanks, sign-offs and narration before anything else
    decompose_with_llm: bool = True  # False: the LLM (if any) only answers and rewords follow-ups
    pool_budget: int | None = None  # if set: k = pool_budget // number of queries
    retrieve_original: bool = True  # also retrieve with the whole question
    follow_up: bool = False
    follow_up_min_score: float = 0.35  # a sub-question whose best retrieval scores below this is "thin"
    answer: bool = False
    answer_passages: int = 5
    model: str | None = None  # reranker model (default: the engine's default)
    # "fusion" (default): the engine scores the pool against the whole question AND each
    # sub-question, and the per-query rankings are fused by RRF, so every part of the question gets
    # passages near the top (measured with bench/multihop.py: docs/agent.md). "original": rank the pool by the engine's score
    # against the whole question only (the paper's setting; scores are the engine's).
    rerank: Literal["original", "fusion"] = "fusion"


class _Timer:
    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def stage(self, name: str, **detail: Any) -> _StageCtx:
        return _StageCtx(self.trace, name, detail)


class _StageCtx:
    def __init__(self, trace: Trace, name: str, detail: dict[str, Any]) -> None:
        self.trace, self.name, self.detail = trace, name, detail

    def __enter__(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        return self.detail

    def __exit__(self, *exc: Any) -> None:
        self.trace.stages.append(
            Stage(name=self.name, seconds=round(time.perf_counter() - self.t0, 4), detail=self.detail)
        )


class DecompositionAgent:
    """Decompose, retrieve per query, merge, rerank against the original question."""

    def __init__(self, reranker: Reranker, llm: LLM | None = None, config: AgentConfig | None = None) -> None:
        self.reranker = reranker
        self.llm = llm
        self.config = config or AgentConfig()

    # -- public --------------------------------------------------------------------------------
    def run(self, question: str, retriever: Retriever, **overrides: Any) -> SearchResult:
        return run_sync(self.arun(question, retriever, **overrides))

    async def arun(
        self,
        question: str,
        retriever: Retriever,
        *,
        decompose: bool = True,
        sub_questions: list[str] | None = None,
        decomposition: Decomposition | None = None,
        collection: str | None = None,
        **overrides: Any,
    ) -> SearchResult:
        """Run the loop for ``question`` over ``retriever``.

        ``decompose=False`` retrieves with the question alone; ``sub_questions`` (e.g. from the
        calling agent's own LLM over MCP) replaces the decomposition step; so does a ready
        ``decomposition`` (e.g. from one batched :func:`~adaptrank.agents.decompose.decompose_many`). ``overrides``: any
        :class:`AgentConfig` field (``top_n``, ``k``, ``pool_budget``, ``follow_up``...).
        """
        cfg = self._config(overrides)
        question = self._check(question, cfg)
        trace = Trace()
        timer = _Timer(trace)
        t_start = time.perf_counter()

        # 1. clean and decompose (only a message with several asks is split)
        with timer.stage("decompose") as d:
            if decomposition is not None:
                dec = decomposition
            elif sub_questions:
                c = clean_message(question) if cfg.clean else Cleaned(question)
                dec = Decomposition(c.text, self._given(sub_questions, cfg), "caller", removed=c.removed)
            elif decompose:
                llm = self.llm if cfg.decompose_with_llm else None
                dec = await adecompose(question, llm, cfg.max_subquestions, clean=cfg.clean)
            else:
                c = clean_message(question) if cfg.clean else Cleaned(question)
                dec = Decomposition(c.text, [c.text], "off", removed=c.removed)
            d.update(method=dec.method, sub_questions=dec.sub_questions, template=dec.template)
            if dec.question != question:
                d.update(cleaned=dec.question, removed=dec.removed)
            if dec.error:
                d["error"] = dec.error
        queries = dec.queries if cfg.retrieve_original or len(dec.queries) == 1 else dec.queries[1:]
        focus = dec.queries[0]  # what the pool is reranked against: the cleaned (or rewritten) question

        # 2. retrieve per query
        k = cfg.k if cfg.pool_budget is None else max(1, cfg.pool_budget // len(queries))
        with timer.stage("retrieve", queries=len(queries), k=k) as d:
            rankings = await asyncio.to_thread(retriever.retrieve, queries, k)
            if hasattr(retriever, "query_tower"):
                d["query_tower"] = retriever.query_tower
            d["candidates"] = sum(len(r) for r in rankings)

        # 3. merge + dedupe by id, keeping provenance
        with timer.stage("merge") as d:
            pool: dict[str, Hit] = {}
            found: dict[str, list[Provenance]] = {}
            self._merge(pool, found, queries, rankings, round_=0)
            d["pool"] = len(pool)

        # 4. rerank the pool against the ORIGINAL question (and, for "fusion", each sub-question)
        with timer.stage("rerank", pool=len(pool), mode=cfg.rerank) as d:
            fingerprint = getattr(retriever, "embedding_fingerprint", None)
            scores, per_query, resolved, d["passages"] = await self._score(focus, queries, pool, cfg, fingerprint)
            d["model"] = resolved.name
            d["pairs"] = len(pool) * (len(per_query) if per_query else 1)

        # 5. optional follow-up round for sub-questions with thin coverage
        if cfg.follow_up and len(queries) > 1:
            with timer.stage("follow_up") as d:
                thin = self._thin(queries, rankings, scores, found, cfg)
                d["thin"] = [queries[i] for i in thin]
                if thin:
                    extra_queries = await self._follow_up_queries(focus, [queries[i] for i in thin])
                    d["queries"] = extra_queries
                    extra = await asyncio.to_thread(retriever.retrieve, extra_queries, 2 * k)
                    offset = len(queries)
                    queries = queries + extra_queries
                    before = len(pool)
                    self._merge(pool, found, queries, [[]] * offset + extra, round_=1)
                    d["new_passages"] = len(pool) - before
                    scores, per_query, resolved, _ = await self._score(focus, queries, pool, cfg, fingerprint)

        order = sorted(pool, key=lambda i: -scores[i])[: cfg.top_n]
        results = [
            Passage(
                id=i,
                text=pool[i].text,
                metadata=pool[i].metadata,
                score=float(scores[i]),
                rank=r,
                found_by=found[i],
                query_scores=[round(float(q[i]), 6) for q in per_query] if per_query else None,
            )
            for r, i in enumerate(order, 1)
        ]

        # 6. optional answer with citations
        answer = None
        if cfg.answer and self.llm is not None and results:
            with timer.stage("answer") as d:
                answer = await self._answer(focus, results[: cfg.answer_passages])
                d["valid"] = answer.valid

        trace.total_seconds = round(time.perf_counter() - t_start, 4)
        return SearchResult(
            question=question,
            cleaned_question=dec.question if dec.question != question else None,
            collection=collection,
            queries=queries,
            decomposition=dec.method,
            decomposition_error=dec.error,
            pool_size=len(pool),
            model=resolved.name,
            model_version=resolved.version,
            results=results,
            answer=answer,
            trace=trace,
        )

    # -- steps ---------------------------------------------------------------------------------
    def _config(self, overrides: dict[str, Any]) -> AgentConfig:
        values = {**self.config.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = set(values) - set(AgentConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown agent options: {sorted(unknown)}")
        return AgentConfig(**values)

    def _check(self, question: str, cfg: AgentConfig) -> str:
        s = self.reranker.settings
        if not isinstance(question, str) or not question.strip():
            raise InputError("question", "must be a non-empty string")
        if len(question) > s.max_query_chars:
            raise InputError("question", f"has {len(question)} characters; the limit is {s.max_query_chars}")
        if not 1 <= cfg.top_n <= s.max_documents:
            raise InputError("top_n", f"is {cfg.top_n}; it must be between 1 and {s.max_documents}")
        if not 1 <= cfg.k <= s.max_documents:
            raise InputError("k", f"is {cfg.k}; it must be between 1 and {s.max_documents}")
        if not 1 <= cfg.max_subquestions <= 10:
            raise InputError("max_subquestions", f"is {cfg.max_subquestions}; it must be between 1 and 10")
        if cfg.rerank not in ("original", "fusion"):
            raise InputError("rerank", f"is {cfg.rerank!r}; use 'original' or 'fusion'")
        if cfg.pool_budget is not None and not 1 <= cfg.pool_budget <= s.max_documents:
            raise InputError("pool_budget", f"is {cfg.pool_budget}; it must be between 1 and {s.max_documents}")
        return question.strip()

    def _given(self, subs: list[str], cfg: AgentConfig) -> list[str]:
        limit = self.reranker.settings.max_query_chars
        if len(subs) > cfg.max_subquestions:
            raise InputError("sub_questions", f"has {len(subs)} items; the limit is {cfg.max_subquestions}")
        for n, sub in enumerate(subs):
            if not isinstance(sub, str) or not sub.strip() or len(sub) > limit:
                raise InputError(f"sub_questions[{n}]", f"must be a non-empty string of at most {limit} characters")
        return [" ".join(s.split()) for s in subs]

    @staticmethod
    def _merge(
        pool: dict[str, Hit],
        found: dict[str, list[Provenance]],
        queries: list[str],
        rankings: list[list[Hit]],
        round_: int,
    ) -> None:
        for qi, ranking in enumerate(rankings):
            for rank, hit in enumerate(ranking, 1):
                pool.setdefault(hit.id, hit)
                found.setdefault(hit.id, []).append(
                    Provenance(query_index=qi, query=queries[qi], rank=rank, score=float(hit.score), round=round_)
                )

    async def _score_vectors(
        self,
        question: str,
        queries: list[str],
        pool: dict[str, Hit],
        ids: list[str],
        cfg: AgentConfig,
        fingerprint: str | None,
    ):
        """The same scores as :meth:`_score` from the passages' stored vectors, when the retriever
        returned them and the model's passage tower made them; None otherwise."""
        if fingerprint is None or any(pool[i].embedding is None for i in ids):
            return None
        import numpy as np

        vectors = np.asarray([pool[i].embedding for i in ids], dtype=np.float32)
        wanted = [question] if cfg.rerank == "original" or len(queries) == 1 else list(queries)
        out = await self.reranker.ascore_embedded(wanted, vectors, fingerprint, cfg.model)
        if out is None:
            return None
        matrix, resolved = out
        per_query = [dict(zip(ids, (float(x) for x in row), strict=True)) for row in matrix]
        if len(per_query) == 1:
            return per_query[0], [], resolved, "stored vectors"
        return _fuse(ids, per_query), per_query, resolved, "stored vectors"

    async def _score(
        self, question: str, queries: list[str], pool: dict[str, Hit], cfg: AgentConfig, fingerprint: str | None = None
    ):
        """``(final score by id, per-query engine scores or [], resolved model, "stored vectors" |
        "texts")``; from stored passage vectors when ``fingerprint`` (of the model that made them)
        matches the model's passage tower, else by scoring the texts."""
        if not pool:
            return {}, [], await asyncio.to_thread(self.reranker.describe, cfg.model), "texts"
        ids = list(pool)
        texts = [pool[i].text for i in ids]
        scored = await self._score_vectors(question, queries, pool, ids, cfg, fingerprint)
        if scored is not None:
            return scored
        if cfg.rerank == "original" or len(queries) == 1:
            scores, resolved = await self.reranker.ascore_texts(question, texts, cfg.model)
            return dict(zip(ids, (float(x) for x in scores), strict=True)), [], resolved, "texts"
        # fusion: concurrent requests share forward passes through the engine's micro-batcher
        outs = await asyncio.gather(*(self.reranker.ascore_texts(q, texts, cfg.model) for q in queries))
        resolved = outs[0][1]
        per_query = [dict(zip(ids, (float(x) for x in sc), strict=True)) for sc, _ in outs]
        return _fuse(ids, per_query), per_query, resolved, "texts"

    @staticmethod
    def _thin(
        queries: list[str],
        rankings: list[list[Hit]],
        scores: dict[str, float],
        found: dict[str, list[Provenance]],
        cfg: AgentConfig,
    ) -> list[int]:
        """Sub-questions (index >= 1) none of whose candidates reached the top, or whose best
        retrieval score is below ``follow_up_min_score``."""
        top = set(sorted(scores, key=lambda i: -scores[i])[: cfg.top_n])
        thin = []
        for qi in range(1, len(rankings)):
            hits = rankings[qi]
            best = max((h.score for h in hits), default=0.0)
            if not hits or best < cfg.follow_up_min_score or not top.intersection(h.id for h in hits):
                thin.append(qi)
        return thin

    async def _follow_up_queries(self, question: str, subs: list[str]) -> list[str]:
        """A reworded query per thin sub-question (LLM), or the sub-question's own clauses (rules)."""
        if self.llm is not None:
            prompts = [FOLLOW_UP.render(question=question, sub_question=s) for s in subs]
            try:
                raws = await self.llm.agenerate(
                    prompts, max_new_tokens=64, temperature=0.0, json_schema=FOLLOW_UP.json_schema, strict=False
                )
            except LLMError:
                raws = [""] * len(subs)
            out = []
            for sub, raw in zip(subs, raws, strict=True):
                try:
                    data = extract_json(raw)
                    q = data.get("query") if isinstance(data, dict) else None
                except ValueError:
                    q = None
                out.append(q.strip() if isinstance(q, str) and len(q.strip()) >= 3 else sub)
            return out
        # no LLM: the sub-question stripped to its content words (a keyword query reaches what the
        # question form missed), or split further by the rules
        out = []
        for sub in subs:
            parts = rule_split(sub)
            out.append(
                parts[-1] if len(parts) > 1 else " ".join(w for w in sub.rstrip("?").split() if len(w) > 3) or sub
            )
        return out

    async def _answer(self, question: str, passages: list[Passage]) -> Answer:
        numbered = "\n".join(f"[{n}] {p.text[:1200]}" for n, p in enumerate(passages, 1))
        prompt = ANSWER.render(question=question, passages=numbered)
        try:
            raw = (
                await self.llm.agenerate(
                    [prompt], max_new_tokens=256, temperature=0.0, json_schema=ANSWER.json_schema, strict=False
                )
            )[0]
        except LLMError as exc:
            return Answer(text=f"(the LLM failed: {exc})", citations=[], valid=False)
        try:
            data = extract_json(raw)
            text = data["answer"]
            cites = [int(c) for c in data.get("citations", [])]
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty answer")
        except (ValueError, KeyError, TypeError):
            return Answer(text=raw.strip(), citations=[], valid=False)
        ids = [passages[c - 1].id for c in dict.fromkeys(cites) if 1 <= c <= len(passages)]
        return Answer(text=text.strip(), citations=ids, valid=True)


def _fuse(ids: list[str], per_query: list[dict[str, float]]) -> dict[str, float]:
    """Reciprocal-rank fusion of the per-query rankings of one pool."""
    fused = rrf_scores(sorted(ids, key=lambda i: -sc[i]) for sc in per_query)
    return {i: fused.get(i, 0.0) for i in ids}
