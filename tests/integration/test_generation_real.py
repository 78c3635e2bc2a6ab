"""Training-data generation with the REAL embedded LLM (SmolLM2-135M from the offline GGUF) on a
handful of medquad-dev documents: the whole pipeline, the judge methods, and the backend's
batching and prefix cache on real text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptrank.core.beir import load_beir
from adaptrank.core.llm.factory import get_llm
from adaptrank.core.prompts import JUDGE_RELEVANCE, judge_prompt, querygen_typed_prompt
from adaptrank.core.settings import Settings
from adaptrank.training.dataset import DatasetStore
from adaptrank.training.generate import generate_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "medquad-dev"


@pytest.fixture(scope="module")
def llm():
    return get_llm(Settings(), "transformers")  # the embedded default, loaded once


@pytest.fixture(scope="module")
def medquad():
    if not (DATA / "corpus.jsonl").is_file():
        pytest.skip(f"{DATA} not available")
    return load_beir(DATA, corpus_limit=300)


@pytest.fixture
def corpus_dir(tmp_path, medquad):
    """40 real answers as a folder of text files (a small corpus keeps mining and dense fast)."""
    root = tmp_path / "medquad"
    root.mkdir()
    for i, doc_id in enumerate(list(medquad.corpus)[:40]):
        (root / f"{i:02d}.txt").write_text(medquad.doc_text(doc_id))
    return root


def test_pipeline_with_the_embedded_llm(llm, corpus_dir, tmp_path):
    settings = Settings(home=tmp_path / "home")
    ref = generate_dataset(
        {
            "source": "folder",
            "path": str(corpus_dir),
            "output_name": "real",
            "max_documents": 4,
            "queries_per_document": 2,
            "negatives": 3,
            "question_types": "medical",
            "batch_documents": 4,
        },
        settings,
        llm=llm,
        restrict_paths=False,
    )
    card = ref.card
    assert card.llm == card.judge == "transformers:SmolLM2-135M-Instruct"
    assert card.label_stats["judge_method"] == "likelihood" and card.prompt_versions["judge"] == "judge.likelihood@1"
    assert card.extra["mining"]["retrievers"] == ["bm25", "dense:memory"]
    groups = DatasetStore(settings).load("real") + DatasetStore(settings).load("real", split="dev")
    assert len(groups) >= 4  # 8 queries asked for; cleaning may drop a few, never all
    files = {p.name: p.read_text() for p in corpus_dir.iterdir()}
    for g in groups:
        assert g.query.endswith("?") and 3 <= len(g.query.split()) <= 40
        # the positive is a chunk of the query's source document (later chunks get "<title>. ")
        assert g.positive.split(". ", 1)[-1][:80] in files[g.doc_id]
        assert g.doc_id not in {i.split("#")[0] for i in g.negative_ids}
        assert len(g.negatives) == 3 and all(s is None or 0.0 <= s <= 1.0 for s in g.negative_scores)
    assert card.seconds["querygen"] > 0 and card.extra["llm_stats"]["generated_tokens"] > 0
    print(json.dumps([{"q": g.query, "type": g.query_type} for g in groups], indent=1))


def test_backend_on_real_text(llm, medquad):
    docs = [medquad.doc_text(d) for d in list(medquad.corpus)[:6]]
    prompts = [querygen_typed_prompt(d, "symptoms") for d in docs]
    batched = llm.generate(prompts, max_new_tokens=40, stop=["\n"])
    assert all(t.strip() and "\n" not in t for t in batched)
    assert sum(t.strip().endswith("?") for t in batched) >= 4  # the model writes questions
    # the shared-prefix cache changes the work, not the scores
    judged = [judge_prompt("What are the symptoms of this condition?", d) for d in docs]
    with_cache = llm.judge(judged, list(JUDGE_RELEVANCE.choices))
    llm.prefix_cache = False
    try:
        without = llm.judge(judged, list(JUDGE_RELEVANCE.choices))
    finally:
        llm.prefix_cache = True
    # (bf16 on AMX CPUs: a different padding layout moves probabilities by a few hundredths)
    assert [a[1] for a in with_cache] == pytest.approx([b[1] for b in without], abs=0.1)
    # query likelihood: the source passage explains its own question better than others, mostly
    from adaptrank.core.prompts import likelihood_prompt

    questions = {
        qid: q
        for qid, q in medquad.queries.items()
        if any(d in list(medquad.corpus)[:6] for d in medquad.qrels.get(qid, {}))
    }
    hits = 0
    for qid, q in list(questions.items())[:4]:
        own = next(iter(medquad.qrels[qid]))
        cands = [own, *list(list(medquad.corpus)[100:103])]
        lls = llm.loglikelihood([likelihood_prompt(medquad.doc_text(d)) for d in cands], [q] * len(cands))
        hits += max(range(len(cands)), key=lambda i: lls[i]) == 0
    assert hits >= 3
