"""adapt(): generate -> fine-tune -> evaluate -> promote in one call, on a tiny BEIR folder with a
scripted LLM; the real questions are only ever evaluated, never trained on."""

from __future__ import annotations

import json
import re

import pytest

from adaptrank.core.llm import ScriptedLLM
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings

pytestmark = pytest.mark.timeout(300)

CONDITIONS = ["Alder fever", "Birch syndrome", "Cedar disease", "Dogwood palsy", "Elm anemia", "Fir dystrophy"]
ASPECTS = {
    "causes": "{c} is caused by a change in one gene and by infections in early childhood.",
    "symptoms": "The symptoms of {c} include fever, skin rash, tiredness and pain in the joints.",
    "treatment": "Treatment of {c} involves rest, medication for the pain and physical therapy.",
}
ASK = {"causes": "What causes {c}?", "symptoms": "What are the symptoms of {c}?", "treatment": "How is {c} treated?"}


def _beir(folder):
    folder.mkdir(parents=True)
    corpus, queries, qrels = [], [], []
    for i, c in enumerate(CONDITIONS):
        for aspect, text in ASPECTS.items():
            doc = f"{i}-{aspect}"
            corpus.append({"_id": doc, "title": c, "text": text.format(c=c)})
            queries.append({"_id": f"q{doc}", "text": f"REALQ {aspect} of {c} please"})
            qrels.append(f"q{doc}\t{doc}\t1\n")
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    return folder


def _respond(prompt) -> str:
    user = prompt[-1]["content"]
    passage = re.search(r"Passage: (.*?)\n\nWrite", user, re.S)
    text = passage.group(1) if passage else user
    c = next((c for c in CONDITIONS if c in text), "it")
    low = text.lower()
    aspect = "causes" if "caused by" in low else "symptoms" if "symptoms of" in low else "treatment"
    return ASK[aspect].format(c=c)


def test_adapt_end_to_end(settings, tiny_zero_shot, tmp_path):
    from adaptrank.training.adapt import AdaptParams, adapt
    from adaptrank.training.dataset import DatasetStore

    beir = _beir(tmp_path / "team")
    s = Settings(home=settings.home, embedding_model=tiny_zero_shot)
    stages = []
    result = adapt(
        AdaptParams(
            path=str(beir),
            name="team",
            max_documents=18,
            queries_per_document=1,
            negatives=3,
            group_size=4,
            epochs=2,
            question_types="medical",
            promote=True,
        ),
        s,
        llm=ScriptedLLM(_respond),
        restrict_paths=False,
        progress=lambda d, t, m: stages.append(m.split(":")[0]),
        report=tmp_path / "report.html",
    )
    assert result.model == "team-reranker" and result.dataset.startswith("team-synth@")
    assert result.promoted and ModelStore(s.models_dir).active_version("team-reranker") == result.version
    rows = [r["model"] for r in result.evaluation["results"]]
    assert rows == ["bm25", "zero-shot", f"team-reranker@{result.version}"]
    assert result.evaluation["queries"] == 18
    assert {"generate", "finetune", "evaluate"} <= set(stages)
    assert set(result.seconds) == {"generate", "finetune", "evaluate"}
    groups = DatasetStore(s).load("team-synth") + DatasetStore(s).load("team-synth", split="dev")
    assert groups and not any("REALQ" in g.query for g in groups)  # the real questions never reach training
    # the HTML report: real-question table + dev table, zero-shot vs the new version, its training curve
    assert result.report == str(tmp_path / "report.html") and result.report_error is None
    page = (tmp_path / "report.html").read_text()
    new = f"team-reranker@{result.version}"
    assert f"adaptrank adapt: {new}" in page and "Per query: zero-shot@" in page and f" vs {new}</h2>" in page
    assert page.count("<table") == 2 and page.count("<svg") == 2 and "generated dev split" in page
    assert "dev evaluations from the model card" in page


def test_adapt_needs_exactly_one_source():
    from adaptrank.core.errors import InputError
    from adaptrank.training.adapt import AdaptParams

    with pytest.raises((InputError, ValueError), match="exactly one of collection or path"):
        AdaptParams()
    with pytest.raises((InputError, ValueError), match="exactly one"):
        AdaptParams(collection="a", path="/x")


def test_real_questions_make_the_promotion_decision(settings, tiny_zero_shot, tmp_path):
    from adaptrank.training.adapt import AdaptParams, adapt

    beir = _beir(tmp_path / "team")
    s = Settings(home=settings.home, embedding_model=tiny_zero_shot)
    result = adapt(
        AdaptParams(
            path=str(beir),
            name="team",
            max_documents=18,
            queries_per_document=1,
            negatives=3,
            group_size=4,
            epochs=1,
            question_types="medical",
        ),
        s,
        llm=ScriptedLLM(_respond),
        restrict_paths=False,
    )
    assert result.gate == "real questions" and "mrr@10 on real questions (18 groups)" in result.decision
    rows = {r["model"]: r["metrics"]["mrr@10"] for r in result.evaluation["results"]}
    new, old = rows[f"team-reranker@{result.version}"], rows["zero-shot"]
    assert f"{new:.4f}" in result.decision and f"{old:.4f}" in result.decision
    active = ModelStore(s.models_dir).active_version("team-reranker")
    assert (active == result.version) == result.promoted
    if new <= old:
        assert not result.promoted


def test_adapt_gives_generation_its_share_of_the_time_budget(monkeypatch, settings, tmp_path):
    from types import SimpleNamespace

    from adaptrank.training import adapt as adapt_mod
    from adaptrank.training import generate

    seen = []

    def stop_here(params, *a, **kw):
        seen.append(params)
        raise RuntimeError("stop after generation's params")

    monkeypatch.setattr(generate, "generate_dataset", stop_here)  # adapt imports it when called
    for minutes, share in ((20, 17.0), (0, 0.0)):
        with pytest.raises(RuntimeError, match="stop after"):
            adapt_mod.adapt(
                adapt_mod.AdaptParams(path=str(_beir(tmp_path / f"t{minutes}")), max_minutes=minutes),
                settings,
                llm=ScriptedLLM(_respond),
                restrict_paths=False,
            )
        assert seen[-1].max_minutes == share  # 0 stays "no budget"
    card = SimpleNamespace(extra={"time_budget": {"stopped_after_documents": 384}}, counts={"documents_sampled": 1000})
    assert adapt_mod._budget_note(card, 17, 20) == (
        "generation stopped at its 17-minute share of the 20-minute budget after 384 of 1000 documents "
        "(max_minutes; 0: no budget)"
    )
    assert adapt_mod._budget_note(SimpleNamespace(extra={}, counts={}), 17, 20) is None
