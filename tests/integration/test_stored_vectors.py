"""An adapted query tower in first-stage retrieval, and reranking from Chroma's stored vectors.

A query-encoder residual keeps the zero-shot passage tower, so the vectors Chroma stores (ingested
with the same model, checked by fingerprint) are exactly its passage vectors: retrieval queries with
the adapted tower, and the rerank stage scores the pool from the stored vectors instead of embedding
the passages again. Real MiniLM, real embedded Chroma; the "adapted" tower is MiniLM with one weight
matrix perturbed, so its query vectors visibly differ from the store's.
"""

from __future__ import annotations

import numpy as np
import pytest

from adaptrank.agents.agent import AgentConfig, DecompositionAgent
from adaptrank.agents.retrieval import ChromaRetriever
from adaptrank.core.docstore import FINGERPRINT_KEY, DocStore
from adaptrank.core.embeddings import model_fingerprint
from adaptrank.core.engine import Reranker
from adaptrank.core.errors import InputError
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TEXTS = {
    "gout-cause": "Gout is caused by uric acid crystals in the joints.",
    "gout-treat": "Gout is treated with colchicine and anti-inflammatory drugs.",
    "asthma-treat": "Asthma is treated with inhaled corticosteroids.",
    "asthma-cause": "Asthma is triggered by allergens and cold air.",
    "paris": "Paris is the capital of France.",
    "tea": "Green tea is made from unoxidised leaves.",
}
Q = "What causes gout, and how is asthma treated?"


def _adapted_model(settings: Settings, minilm: str) -> str:
    """A residual model card over the zero-shot prior with a perturbed copy of MiniLM as query tower."""
    import torch
    from sentence_transformers import SentenceTransformer

    tower = SentenceTransformer(minilm, device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        w = tower[0].auto_model.encoder.layer[5].output.dense.weight
        w.add_(0.02 * torch.randn_like(w))
    card = {
        "backend": "residual",
        "base_model": "zero-shot",
        "dataset": "toy@1",
        "loss": "lce",
        "extra": {
            "residual": {"prior": "zero-shot", "tau": 0.05, "query_encoder": "query_encoder", "cross_encoder": None}
        },
    }
    store = ModelStore(settings.models_dir)
    with store.writing("adapted", card) as tmp:
        tower.save(str(tmp / "query_encoder"))
    version = store.versions("adapted")[-1]
    store.activate("adapted", version)
    return "adapted"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm):
    settings = Settings(home=tmp_path_factory.mktemp("home"), embedding_model=minilm)
    store = DocStore(settings)
    store.upsert("docs", list(TEXTS), list(TEXTS.values()), [{"doc_id": i} for i in TEXTS], progress=False)
    model = _adapted_model(settings, minilm)
    reranker = Reranker(settings=settings)
    yield settings, store, reranker, model
    reranker.close()


def test_a_new_collection_records_its_model_fingerprint(setup, minilm):
    _, store, reranker, model = setup
    assert store.embedding_fingerprint("docs") == model_fingerprint(minilm)
    assert reranker.passage_fingerprint(model) == model_fingerprint(minilm) == reranker.passage_fingerprint("zero-shot")


def test_retrieval_uses_the_adapted_query_tower_when_asked(setup):
    _, store, reranker, model = setup
    # by default the first stage keeps the base tower (an adapted tower loses recall over a whole
    # collection); the hits still carry the stored vectors for the rerank stage
    default = ChromaRetriever.for_reranker(store, "docs", reranker, model)
    assert default.query_tower == "base" and all(h.embedding is not None for h in default.retrieve(["gout"], 3)[0])
    retriever = ChromaRetriever.for_reranker(store, "docs", reranker, model, first_stage="model")
    assert retriever.query_tower == "reranker"
    hits = retriever.retrieve(["what causes gout"], 6)[0]
    # the ranking is the adapted query vector against the stored passage vectors, computed here by hand
    q = reranker.embed_queries(["what causes gout"], model)[0]
    stored = store.embeddings("docs", list(TEXTS))
    expected = sorted(TEXTS, key=lambda i: -float(np.dot(q, stored[i])))
    assert [h.id for h in hits] == expected
    assert all(h.embedding is not None for h in hits)
    # the store's own query vector differs from the adapted one: the tower really was swapped
    own = store.embedding_function.embed(["what causes gout"])[0]
    assert not np.allclose(own, q, atol=1e-4)


def test_rerank_from_stored_vectors_matches_text_scoring(setup):
    _, store, reranker, model = setup
    agent = DecompositionAgent(reranker, None, AgentConfig(k=4))
    retriever = ChromaRetriever.for_reranker(store, "docs", reranker, model, first_stage="model")
    fast = agent.run(Q, retriever)
    rerank = next(s for s in fast.trace.stages if s.name == "rerank")
    assert rerank.detail["passages"] == "stored vectors"
    assert next(s for s in fast.trace.stages if s.name == "retrieve").detail["query_tower"] == "reranker"

    class TextsOnly:  # the same hits without vectors: the engine embeds the texts
        embedding_fingerprint = None

        def retrieve(self, queries, k):
            rows = retriever.retrieve(queries, k)
            for row in rows:
                for h in row:
                    h.embedding = None
            return rows

    slow = agent.run(Q, TextsOnly())
    assert next(s for s in slow.trace.stages if s.name == "rerank").detail["passages"] == "texts"
    assert [p.id for p in fast.results] == [p.id for p in slow.results]
    for a, b in zip(fast.results, slow.results, strict=True):
        assert a.query_scores == pytest.approx(b.query_scores, abs=1e-3)


def test_other_passage_towers_never_reuse_the_vectors(setup, tiny_bi_encoder):
    _, store, reranker, _ = setup
    other = f"bi-encoder:{tiny_bi_encoder}"
    retriever = ChromaRetriever.for_reranker(store, "docs", reranker, other)
    assert retriever.query_tower == "store"  # the tiny model's vectors would not match MiniLM's
    res = DecompositionAgent(reranker, None, AgentConfig(k=3, model=other)).run(Q, retriever)
    assert next(s for s in res.trace.stages if s.name == "rerank").detail["passages"] == "texts"
    # a collection without a recorded fingerprint (made by another tool) never hands out vectors
    col = store.client.create_collection(
        "legacy", embedding_function=store.embedding_function, configuration={"hnsw": {"space": "cosine"}}
    )
    col.add(ids=["a"], documents=["gout"], embeddings=store.embedding_function.embed(["gout"]))
    assert FINGERPRINT_KEY not in (col.metadata or {})
    legacy = ChromaRetriever.for_reranker(store, "legacy", reranker)
    assert legacy.query_tower == "store" and legacy.retrieve(["gout"], 1)[0][0].embedding is None


def test_llamaindex_embedding_with_the_adapted_query_tower(setup, minilm, tiny_bi_encoder):
    pytest.importorskip("llama_index.core")
    from adaptrank.integrations.llamaindex import AdaptRankEmbedding

    settings, _, reranker, model = setup
    emb = AdaptRankEmbedding(minilm, reranker_model=model, settings=settings)
    q = np.asarray(emb.get_query_embedding("what causes gout"))
    assert np.allclose(q, reranker.embed_queries(["what causes gout"], model)[0], atol=1e-5)
    plain = np.asarray(AdaptRankEmbedding(minilm).get_query_embedding("what causes gout"))
    assert not np.allclose(q, plain, atol=1e-4)
    text = np.asarray(emb.get_text_embedding(TEXTS["paris"]))  # passages: the unchanged store model
    assert np.allclose(text, np.asarray(AdaptRankEmbedding(minilm).get_text_embedding(TEXTS["paris"])), atol=1e-5)
    with pytest.raises(InputError, match="reranker_model: .*another model"):
        AdaptRankEmbedding(tiny_bi_encoder, reranker_model=model, settings=settings)
