"""LlamaIndex: the postprocessor and the decomposition retriever inside a real VectorStoreIndex over
ChromaVectorStore, and in query engines with no LLM configured (MockLLM, response_mode="no_text")."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core", reason="needs the llamaindex extra")
pytest.importorskip("llama_index.vector_stores.chroma", reason="needs the llamaindex extra")

import chromadb
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core import Settings as LISettings
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.vector_stores.chroma import ChromaVectorStore

from adaptrank.core.engine import Reranker
from adaptrank.integrations import AdaptRankDecomposeRetriever, AdaptRankEmbedding, AdaptRankRerank

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DOCS = {
    "gout-cause": "Gout is caused by a buildup of uric acid crystals in the joints.",
    "gout-treat": "Gout attacks are treated with colchicine and anti-inflammatory drugs.",
    "asthma-treat": "Asthma is treated with inhaled corticosteroids and bronchodilators.",
    "asthma-cause": "Asthma attacks are triggered by allergens, smoke and cold air.",
    "paris": "Paris is the capital of France and its largest city.",
    "tea": "Green tea is made from the leaves of Camellia sinensis.",
}
Q = "What causes gout, and how is asthma treated?"


class Recorder(BaseEventHandler):
    events: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if type(event).__name__.startswith("ReRank"):
            self.events.append(event)


@pytest.fixture(scope="module")
def recorder():
    rec = Recorder()
    get_dispatcher().add_event_handler(rec)  # the root dispatcher sees every module's events
    yield rec
    get_dispatcher().event_handlers.remove(rec)


@pytest.fixture(scope="module")
def reranker(minilm, tmp_path_factory):
    from adaptrank.core.settings import Settings

    rr = Reranker(f"bi-encoder:{minilm}", settings=Settings(home=tmp_path_factory.mktemp("home")))
    yield rr
    rr.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory, minilm):
    LISettings.llm = None  # no LLM configured anywhere: LlamaIndex falls back to MockLLM, never OpenAI
    embed = AdaptRankEmbedding(minilm)
    client = chromadb.PersistentClient(str(tmp_path_factory.mktemp("chroma")))
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("li-docs"))
    docs = [Document(text=t, id_=i, metadata={"key": i}) for i, t in DOCS.items()]
    return VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )


def keys(nodes) -> list[str]:
    return [n.node.metadata["key"] for n in nodes]


def test_postprocessor_in_a_query_engine(index, reranker, recorder):
    recorder.events.clear()
    post = AdaptRankRerank(top_n=2, reranker=reranker)
    assert post.top_n == 2 and post.model is None and AdaptRankRerank.class_name() == "AdaptRankRerank"
    engine = index.as_query_engine(
        similarity_top_k=6, node_postprocessors=[post], llm=MockLLM(), response_mode="no_text"
    )
    response = engine.query("How is asthma treated?")
    assert len(response.source_nodes) == 2
    assert keys(response.source_nodes)[0] == "asthma-treat"
    scores = [n.score for n in response.source_nodes]
    assert scores == sorted(scores, reverse=True)

    # the scores are the engine's for the node content LlamaIndex would embed
    texts = [n.node.get_content(metadata_mode="embed") for n in response.source_nodes]
    expected, _ = reranker.score_texts("How is asthma treated?", texts)
    assert scores == pytest.approx(list(expected), abs=1e-6)

    names = [type(e).__name__ for e in recorder.events]
    assert names == ["ReRankStartEvent", "ReRankEndEvent"]
    start, end = recorder.events
    assert start.top_n == 2 and start.model_name.startswith("bi-encoder:") and len(start.nodes) == 6
    assert keys(end.nodes) == keys(response.source_nodes)


async def test_postprocessor_async_path(index, reranker, recorder):
    recorder.events.clear()
    nodes = await index.as_retriever(similarity_top_k=6).aretrieve("What causes gout?")
    ranked = await AdaptRankRerank(top_n=3, reranker=reranker).apostprocess_nodes(nodes, query_str="What causes gout?")
    assert keys(ranked)[0] == "gout-cause" and len(ranked) == 3
    assert [type(e).__name__ for e in recorder.events] == ["ReRankStartEvent", "ReRankEndEvent"]


def test_decomposition_retriever_over_the_index(index, reranker):
    retriever = AdaptRankDecomposeRetriever(index.as_retriever(), top_n=3, k=2, reranker=reranker)
    nodes = retriever.retrieve(Q)
    got = keys(nodes)
    assert {"gout-cause", "asthma-treat"} <= set(got)
    res = retriever.last_result
    assert res.queries == [Q, "What causes gout?", "How is asthma treated?"] and res.decomposition == "rule"
    by_key = {n.node.metadata["key"]: n for n in nodes}
    assert any("How is asthma treated?" in f for f in by_key["asthma-treat"].node.metadata["found_by"])
    # provenance is metadata for the caller, not text for the embedding or the LLM
    assert "found_by" not in by_key["asthma-treat"].node.get_content(metadata_mode="embed")
    assert "found_by" not in by_key["asthma-treat"].node.get_content(metadata_mode="llm")
    # the index's own nodes are not modified
    assert all("found_by" not in n.node.metadata for n in index.as_retriever(similarity_top_k=6).retrieve(Q))

    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        response_mode="no_text",
        node_postprocessors=[AdaptRankRerank(top_n=2, reranker=reranker)],
    )
    response = engine.query(Q)
    assert len(response.source_nodes) == 2


def test_decomposition_retriever_from_an_adaptrank_collection(tmp_path, minilm, reranker):
    from adaptrank.core.docstore import DocStore
    from adaptrank.core.settings import Settings

    settings = Settings(home=tmp_path / "home", embedding_model=minilm)
    DocStore(settings).upsert("docs", list(DOCS), list(DOCS.values()), [{"key": k} for k in DOCS], progress=False)
    retriever = AdaptRankDecomposeRetriever.from_collection("docs", settings=settings, top_n=4, k=2, reranker=reranker)
    got = keys(retriever.retrieve(Q))
    assert {"gout-cause", "asthma-treat"} <= set(got)

    # the same collection through LlamaIndex's own ChromaVectorStore (nodes rebuilt from documents)
    col = DocStore(settings).collection("docs")
    index = VectorStoreIndex.from_vector_store(
        ChromaVectorStore(chroma_collection=col), embed_model=AdaptRankEmbedding(minilm)
    )
    found = index.as_retriever(similarity_top_k=1).retrieve("What triggers asthma attacks?")
    assert found[0].node.node_id == "asthma-cause"


def test_lazy_exports():
    import adaptrank.integrations as integrations

    assert set(integrations.__all__) >= {"AdaptRankRerank", "AdaptRankDecomposeRetriever", "AdaptRankEmbedding"}
    with pytest.raises(AttributeError):
        integrations.Nope  # noqa: B018
