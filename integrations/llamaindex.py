"""LlamaIndex adapters: a reranking node postprocessor, a decomposition retriever, a local embedding.

Thin on purpose: each wraps adaptrank's engine or agent and adds nothing else.

* :class:`AdaptRankRerank` — a ``BaseNodePostprocessor`` (pydantic fields ``top_n``, ``model``)
  that scores nodes with the one engine (:class:`adaptrank.core.engine.Reranker`) and emits
  LlamaIndex's ``ReRankStartEvent``/``ReRankEndEvent`` through the instrumentation dispatcher, plus
  the legacy ``CBEventType.RERANKING`` callback event, like llama-index-core's own rerankers.
* :class:`AdaptRankDecomposeRetriever` — a ``BaseRetriever`` that runs the decomposition agent:
  splits the question, retrieves with any LlamaIndex retriever (or an adaptrank Chroma collection)
  per sub-question, merges and reranks (by default against the whole question and each
  sub-question, rankings fused; ``rerank="original"`` for the whole question only). Each node's
  metadata gets ``found_by`` (hidden from the embedding and the LLM).
* :class:`AdaptRankEmbedding` — a ``BaseEmbedding`` on the same local sentence-transformers model
  the Chroma store uses (offline MiniLM by default), so an index never needs a hosted embedding.

Requires the ``llamaindex`` extra: ``pip install 'adaptrank[llamaindex]'``.

    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore
    from adaptrank.integrations.llamaindex import AdaptRankEmbedding, AdaptRankRerank

    index = VectorStoreIndex.from_documents(docs, storage_context=..., embed_model=AdaptRankEmbedding())
    engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[AdaptRankRerank(top_n=5)])
"""

from __future__ import annotations

from typing import Any

from adaptrank.core.errors import InputError, MissingExtraError

try:
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("llama-index-core", "llamaindex") from exc

from adaptrank.agents.agent import AgentConfig, DecompositionAgent, run_sync
from adaptrank.agents.results import SearchResult
from adaptrank.agents.retrieval import ChromaRetriever
from adaptrank.core.docstore import DocStore, Hit
from adaptrank.core.engine import Reranker
from adaptrank.core.llm.base import LLM, Prompt
from adaptrank.core.settings import Settings, get_settings

dispatcher = get_dispatcher(__name__)

PROVENANCE_KEY = "found_by"


def _engine(reranker: Any, model: str | None, settings: Settings | None) -> Any:
    if reranker is not None:
        return reranker
    return Reranker(model, settings=settings or get_settings())


class AdaptRankRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with adaptrank's engine (a cross-encoder, or the zero-shot default).

    >>> index.as_query_engine(similarity_top_k=20, node_postprocessors=[AdaptRankRerank(top_n=5)])
    """

    top_n: int = Field(default=5, ge=1, description="number of nodes to return, best first")
    model: str | None = Field(
        default=None, description="adaptrank model: a model-store name, 'zero-shot', or cross-encoder:<path>"
    )
    keep_retrieval_score: bool = Field(default=False, description="keep the retriever's score in metadata")
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="what of each node is scored")
    _reranker: Any = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model: str | None = None,
        *,
        reranker: Any = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(top_n=top_n, model=model, **kwargs)
        self._reranker = _engine(reranker, model, settings)

    @classmethod
    def class_name(cls) -> str:
        return "AdaptRankRerank"

    @property
    def model_name(self) -> str:
        return self.model or self._reranker.default_model

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[str]:
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model_name)
        )
        if query_bundle is None:
            raise ValueError("AdaptRankRerank needs the query (a query bundle or query_str)")
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _apply(self, nodes: list[NodeWithScore], scores: Any) -> list[NodeWithScore]:
        out = []
        for node, score in zip(nodes, scores, strict=True):
            if self.keep_retrieval_score:
                node.node.metadata["retrieval_score"] = node.score
            out.append(NodeWithScore(node=node.node, score=float(score)))
        out.sort(key=lambda n: -(n.score or 0.0))
        return out[: self.top_n]

    def _payload(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: self.top_n,
        }

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = self._start(nodes, query_bundle)
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)) as event:
            scores, _ = self._reranker.score_texts(query_bundle.query_str, texts, self.model)
            ranked = self._apply(nodes, scores)
            event.on_end(payload={EventPayload.NODES: ranked})
        dispatcher.event(ReRankEndEvent(nodes=ranked))
        return ranked

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = self._start(nodes, query_bundle)
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)) as event:
            scores, _ = await self._reranker.ascore_texts(query_bundle.query_str, texts, self.model)
            ranked = self._apply(nodes, scores)
            event.on_end(payload={EventPayload.NODES: ranked})
        dispatcher.event(ReRankEndEvent(nodes=ranked))
        return ranked


class AdaptRankEmbedding(BaseEmbedding):
    """Local sentence-transformers embeddings (shared with adaptrank's Chroma store; no hosted API).

    ``model``: a local path or HF id; ``None`` is the offline all-MiniLM-L6-v2.
    ``reranker_model``: an adapted model from adaptrank's model store (a query-encoder residual, the
    offline default of ``adaptrank adapt``) whose *query* tower embeds queries; texts are still
    embedded by ``model``, which must be that model's passage tower (checked by fingerprint), so an
    index built before adaptation retrieves with the adapted queries and is never re-embedded.
    Measure before you use it for first-stage retrieval over a whole collection: on medquad-dev an
    adapted tower lost first-stage recall (figures: docs/agent.md), which is why adaptrank's own
    ``search`` retrieves with the base tower and lets the adapted model rerank the pool (use
    :class:`AdaptRankRerank` after a plain ``AdaptRankEmbedding()`` for the same here).
    """

    _ef: Any = PrivateAttr()
    _reranker: Any = PrivateAttr(default=None)
    _reranker_model: str | None = PrivateAttr(default=None)

    def __init__(
        self,
        model: str | None = None,
        embed_batch_size: int = 64,
        reranker_model: str | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        from adaptrank.core.embeddings import AdaptRankEmbeddingFunction, model_fingerprint  # chromadb: lazy

        super().__init__(model_name=model or "all-MiniLM-L6-v2 (offline)", embed_batch_size=embed_batch_size, **kwargs)
        self._ef = AdaptRankEmbeddingFunction(model, batch_size=embed_batch_size)
        if reranker_model:
            engine = _engine(None, reranker_model, settings)
            fingerprint = engine.passage_fingerprint()
            if fingerprint is None:
                raise InputError(
                    "reranker_model", f"{reranker_model!r} is not a bi-encoder-family model: it has no query tower"
                )
            if fingerprint != model_fingerprint(model):
                raise InputError(
                    "reranker_model",
                    f"{reranker_model!r} scores passages with another model than {self.model_name!r}; "
                    "its query vectors would not match this index's",
                )
            self._reranker, self._reranker_model = engine, reranker_model

    @classmethod
    def class_name(cls) -> str:
        return "AdaptRankEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        if self._reranker is not None:
            return self._reranker.embed_queries([query], self._reranker_model)[0].tolist()
        return self._ef.embed([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        import asyncio

        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._ef.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._ef.embed(texts).tolist()


class LlamaIndexRetrieverAdapter:
    """Any LlamaIndex retriever as the agent's :class:`~adaptrank.agents.retrieval.Retriever`.

    Keeps the nodes it saw (by id) so the decomposition retriever returns the original nodes.
    """

    def __init__(self, retriever: BaseRetriever, metadata_mode: MetadataMode = MetadataMode.NONE) -> None:
        self.retriever = retriever
        self.metadata_mode = metadata_mode
        self.nodes: dict[str, Any] = {}

    def retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        if hasattr(self.retriever, "similarity_top_k"):
            self.retriever.similarity_top_k = k
        out = []
        for q in queries:
            found = self.retriever.retrieve(q)[:k]
            hits = []
            for n in found:
                self.nodes.setdefault(n.node.node_id, n.node)
                hits.append(
                    Hit(
                        n.node.node_id,
                        n.node.get_content(metadata_mode=self.metadata_mode),
                        dict(n.node.metadata),
                        float(n.score or 0.0),
                    )
                )
            out.append(hits)
        return out


class LlamaIndexLLM(LLM):
    """A LlamaIndex LLM behind adaptrank's LLM protocol (for decomposition with the app's own LLM)."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.name = f"llamaindex:{getattr(getattr(llm, 'metadata', None), 'model_name', type(llm).__name__)}"

    def generate(self, prompts: list[Prompt], **kwargs: Any) -> list[str]:
        from llama_index.core.llms import ChatMessage

        return [
            str(self.llm.chat([ChatMessage(role=m["role"], content=m["content"]) for m in p]).message.content or "")
            for p in prompts
        ]


class AdaptRankDecomposeRetriever(BaseRetriever):
    """Decompose the question, retrieve per sub-question, merge, rerank against the whole question.

    Retrieve through a LlamaIndex retriever::

        AdaptRankDecomposeRetriever(index.as_retriever(), top_n=5, k=10)

    or straight from an adaptrank Chroma collection (``adaptrank ingest``)::

        AdaptRankDecomposeRetriever.from_collection("docs", top_n=5)

    ``llm``: adaptrank's LLM protocol or a LlamaIndex LLM; ``None`` decomposes with rules.
    The last run's full :class:`~adaptrank.agents.results.SearchResult` (trace, queries) is
    ``last_result``.
    """

    def __init__(
        self,
        retriever: Any,
        *,
        top_n: int = 5,
        k: int = 10,
        llm: Any = None,
        model: str | None = None,
        reranker: Any = None,
        settings: Settings | None = None,
        decompose: bool = True,
        max_subquestions: int = 4,
        callback_manager: CallbackManager | None = None,
        **agent_options: Any,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        if isinstance(retriever, BaseRetriever):
            self._adapter: Any = LlamaIndexRetrieverAdapter(retriever)
        elif hasattr(retriever, "retrieve"):
            self._adapter = retriever  # an adaptrank Retriever (e.g. ChromaRetriever)
        else:
            raise TypeError("retriever must be a LlamaIndex BaseRetriever or an adaptrank Retriever")
        if llm is not None and not isinstance(llm, LLM):
            llm = LlamaIndexLLM(llm)
        config = AgentConfig(top_n=top_n, k=k, max_subquestions=max_subquestions, model=model, **agent_options)
        self._agent = DecompositionAgent(_engine(reranker, model, settings), llm, config)
        self._decompose = decompose
        self.last_result: SearchResult | None = None

    @classmethod
    def from_collection(
        cls, collection: str, *, settings: Settings | None = None, hybrid: bool = False, **kwargs: Any
    ) -> AdaptRankDecomposeRetriever:
        settings = settings or get_settings()
        reranker = _engine(kwargs.pop("reranker", None), kwargs.get("model"), settings)
        retriever = ChromaRetriever.for_reranker(
            DocStore(settings), collection, reranker, kwargs.get("model"), hybrid=hybrid
        )
        return cls(retriever, settings=settings, reranker=reranker, **kwargs)

    def _nodes(self, res: SearchResult) -> list[NodeWithScore]:
        known = getattr(self._adapter, "nodes", {})
        out = []
        for p in res.results:
            base = known.get(p.id)
            node = (
                base.model_copy(deep=True)
                if base is not None
                else TextNode(id_=p.id, text=p.text, metadata=dict(p.metadata))
            )
            node.metadata[PROVENANCE_KEY] = [f"{f.query} (rank {f.rank})" for f in p.found_by]
            for keys in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
                if PROVENANCE_KEY not in keys:
                    keys.append(PROVENANCE_KEY)
            out.append(NodeWithScore(node=node, score=p.score))
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return run_sync(self._aretrieve(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        res = await self._agent.arun(query_bundle.query_str, self._adapter, decompose=self._decompose)
        self.last_result = res
        return self._nodes(res)
