"""DocStore over a real embedded Chroma (temp dir) and our registered embedding function."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from adaptrank.core.docstore import DocStore, clean_metadata
from adaptrank.core.embeddings import AdaptRankEmbeddingFunction, shared_model
from adaptrank.core.errors import InputError, NotFoundError

TEXTS = [
    "Gout is caused by uric acid crystals in the joints.",
    "Paris is the capital of France.",
    "Asthma is treated with inhaled corticosteroids.",
    "Cystic fibrosis is inherited in an autosomal recessive pattern.",
]


def test_embedding_function_implements_the_chromadb_protocol(tiny_bi_encoder):
    from chromadb.utils.embedding_functions import config_to_embedding_function, known_embedding_functions

    ef = AdaptRankEmbeddingFunction(tiny_bi_encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # chroma warns for every missing method
        assert not ef.is_legacy()
    assert known_embedding_functions[ef.name()] is AdaptRankEmbeddingFunction
    rebuilt = config_to_embedding_function({"name": ef.name(), "config": ef.get_config()})
    assert isinstance(rebuilt, AdaptRankEmbeddingFunction) and rebuilt.model == tiny_bi_encoder
    vecs = ef(["one text", "another text"])
    assert len(vecs) == 2 and np.allclose([np.linalg.norm(v) for v in vecs], 1.0, atol=1e-5)
    assert ef.default_space() == "cosine"
    assert AdaptRankEmbeddingFunction().get_config()["model"] == "default"  # no site-packages path stored


def test_one_model_per_process(tiny_bi_encoder):
    a = AdaptRankEmbeddingFunction(tiny_bi_encoder)
    b = AdaptRankEmbeddingFunction(tiny_bi_encoder, batch_size=8)
    assert a.st is b.st is shared_model(tiny_bi_encoder)


def test_upsert_query_count_iterate(store):
    ids = [f"d{i}#0" for i in range(len(TEXTS))]
    metas = [{"doc_id": f"d{i}", "chunk": 0, "tags": ["a", "b"], "none": None} for i in range(len(TEXTS))]
    seen = []
    assert store.upsert("notes", ids, TEXTS, metas, batch_size=3, progress=lambda d, t: seen.append((d, t))) == 4
    assert seen == [(3, 4), (4, 4)]
    assert store.list_collections() == ["notes"] and store.count("notes") == 4

    hits = store.query("notes", [TEXTS[2], TEXTS[0]], k=10)
    assert len(hits) == 2 and len(hits[0]) == 4  # k capped at the collection size
    assert hits[0][0].id == "d2#0" and hits[1][0].id == "d0#0"  # an exact text is its own nearest
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits[0]] == sorted((h.score for h in hits[0]), reverse=True)
    assert hits[0][0].metadata == {"doc_id": "d2", "chunk": 0, "tags": '["a", "b"]'}

    # the score is the cosine of our own embeddings
    ef = store.embedding_function
    q, d = ef.embed([TEXTS[2]]), ef.embed([TEXTS[3]])
    by_id = {h.id: h.score for h in hits[0]}
    assert by_id["d3#0"] == pytest.approx(float(q[0] @ d[0]), abs=1e-4)

    assert store.query("notes", [TEXTS[0]], k=4, where={"doc_id": "d1"})[0][0].id == "d1#0"
    rows = list(store.iter_documents("notes", batch_size=3))
    assert sorted(r[0] for r in rows) == sorted(ids) and all(r[1] for r in rows)

    # upsert replaces by id instead of duplicating
    store.upsert("notes", ["d1#0"], ["Rome is the capital of Italy."], progress=False)
    assert store.count("notes") == 4
    assert store.get("notes", ["d1#0"])[0].text.startswith("Rome")
    store.delete("notes", ids=["d1#0"])
    assert store.count("notes") == 3


def test_plain_chroma_client_uses_our_function_not_its_download(store):
    import chromadb

    store.upsert("notes", ["a", "b"], TEXTS[:2], progress=False)
    col = chromadb.PersistentClient(str(store.settings.chroma_dir)).get_collection("notes")
    conf = col.configuration_json["embedding_function"]
    assert conf["name"] == "adaptrank_sentence_transformer" and conf["type"] == "known"
    assert col.configuration_json["hnsw"]["space"] == "cosine"
    # query by text through chroma's own path: it rebuilds our function from the stored config
    assert col.query(query_texts=[TEXTS[1]], n_results=1)["ids"] == [["b"]]


def test_errors_name_the_field_and_known_collections(store):
    store.upsert("notes", ["a"], TEXTS[:1], progress=False)
    with pytest.raises(NotFoundError, match=r"no collection 'nope'.*\['notes'\]"):
        store.collection("nope")
    with pytest.raises(NotFoundError, match="nope"):
        store.query("nope", ["q"], k=3)
    for bad in ("a", "../etc", "has space", "-dash", "a..b"):
        with pytest.raises(InputError, match="^collection"):
            store.collection(bad, create=True)
    with pytest.raises(InputError, match="^k"):
        store.query("notes", ["q"], k=0)
    with pytest.raises(InputError, match="^texts"):
        store.query("notes", "one string", k=1)
    with pytest.raises(InputError, match="duplicates"):
        store.upsert("notes", ["x", "x"], ["a", "b"], progress=False)
    store.delete_collection("notes")
    assert store.list_collections() == []


def test_a_collection_keeps_its_embedding_model(store, settings, minilm):
    store.upsert("notes", ["a"], TEXTS[:1], progress=False)
    other = settings.model_copy(update={"embedding_model": minilm})
    with pytest.raises(InputError, match="^embedding_model"):
        DocStore(other).collection("notes")


def test_unreachable_server_is_a_clear_error(settings):
    settings.chroma_url = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(ConnectionError, match="chroma run"):
        DocStore(settings).list_collections()


def test_clean_metadata():
    assert clean_metadata({"a": 1, "b": None, "c": float("nan"), "d": {"x": 1}, "e": True}) == {
        "a": 1,
        "d": '{"x": 1}',
        "e": True,
    }
