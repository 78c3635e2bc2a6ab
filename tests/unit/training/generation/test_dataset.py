"""Dataset store: versioned groups, split by document, readable with `datasets`."""

from __future__ import annotations

import json

import pytest

from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.training.dataset import DatasetStore, Group, read_groups, split_by_document, to_hf_dataset


def _groups(n_docs: int = 10, per_doc: int = 3) -> list[Group]:
    return [
        Group(
            query=f"question {d}-{q}",
            positive=f"passage {d}",
            negatives=[f"neg {d}-{q}-{k}" for k in range(2)],
            negative_ids=[f"n{k}" for k in range(2)],
            negative_scores=[0.1, None],
            doc_id=f"doc{d}",
            query_type="definition" if q == 0 else None,
            meta={"chunk_id": f"doc{d}::0"},
        )
        for d in range(n_docs)
        for q in range(per_doc)
    ]


def test_split_is_by_document_and_order_independent():
    groups = _groups()
    train, dev = split_by_document(groups, 0.2, seed=1)
    assert {g.doc_id for g in train}.isdisjoint({g.doc_id for g in dev})
    assert len(train) + len(dev) == len(groups)
    assert len({g.doc_id for g in dev}) == 2
    _train2, dev2 = split_by_document(list(reversed(groups)), 0.2, seed=1)
    assert {g.doc_id for g in dev2} == {g.doc_id for g in dev}
    # two documents: each split keeps one
    t, d = split_by_document(_groups(2), 0.1)
    assert len({g.doc_id for g in t}) == 1 and len({g.doc_id for g in d}) == 1


def test_write_load_list_latest(settings):
    store = DatasetStore(settings)
    ref = store.write("med", _groups(), {"llm": "scripted", "source": {"kind": "folder"}}, dev_fraction=0.2)
    assert ref.latest and (ref.path / "card.json").is_file()
    assert ref.card.counts["groups"] == 30 and ref.card.counts["dev_documents"] == 2
    assert ref.card.label_stats["negatives_per_group_mean"] == 2
    assert ref.card.label_stats["query_types"] == {"definition": 10}
    train = store.load("med")
    dev = store.load("med", split="dev")
    assert len(train) + len(dev) == 30
    assert train[0].negative_scores == [0.1, None]
    ref2 = store.write("med", _groups(4), {})
    assert store.get("med").version == ref2.version != ref.version
    assert [r.version for r in store.list()] == sorted([ref.version, ref2.version])
    assert store.load("med", ref.version, "train")  # older versions stay readable
    assert store.card("med").counts["groups"] == 12
    assert not any(p.name.startswith(".tmp") for p in (settings.datasets_dir / "med").iterdir())


def test_datasets_library_reads_the_files(settings):
    import datasets

    ref = DatasetStore(settings).write("med", _groups(), {})
    ds = datasets.load_dataset(
        "json",
        data_files={"train": str(ref.file("train")), "dev": str(ref.file("dev"))},
        cache_dir=str(settings.home / "hf"),
    )
    assert ds["train"].num_rows + ds["dev"].num_rows == 30
    assert set(ds["train"].column_names) >= {"query", "positive", "negatives", "doc_id"}
    hf = to_hf_dataset(ref, "train")
    assert hf.num_rows == ds["train"].num_rows and json.loads(hf[0]["meta"])["chunk_id"].startswith("doc")


def test_empty_and_malformed_are_clear_errors(settings, tmp_path):
    store = DatasetStore(settings)
    with pytest.raises(InputError, match="no training groups"):
        store.write("empty", [], {})
    assert store.names() == []
    with pytest.raises(NotFoundError, match="does not exist"):
        store.load("nothing")
    with pytest.raises(InputError, match="not a valid name"):
        store.write("../escape", _groups(), {})
    bad = tmp_path / "bad.jsonl"
    good = _groups(1)[0].model_dump_json()
    bad.write_text(good + "\n\n" + json.dumps({"query": "q", "negatives": []}) + "\n")
    with pytest.raises(InputError, match=r"line 3: positive"):
        read_groups(bad)
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(InputError, match="line 2"):
        read_groups(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no groups"):
        read_groups(tmp_path / "empty.jsonl")


def test_refuses_documents_in_both_splits(settings):
    g = _groups(2)
    with pytest.raises(InputError, match="both splits"):
        DatasetStore(settings).write("x", train=g[:4], dev=g[2:])
