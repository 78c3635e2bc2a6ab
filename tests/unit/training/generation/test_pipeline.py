"""The generation pipeline end to end with a scripted LLM: dataset contents, card, batching,
judge on/off, Chroma source, bad input, and a resumed job equal to an uninterrupted one."""

from __future__ import annotations

import threading

import pytest

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.llm import LLMError, ScriptedLLM
from adaptrank.server.jobs import JobManager, JobState
from adaptrank.server.jobs.kinds import generate_job
from adaptrank.training.dataset import DatasetStore
from adaptrank.training.generate import GenerateParams, generate_dataset


def _params(corpus_dir, **kw):
    base = dict(
        source="folder",
        path=str(corpus_dir),
        output_name="toy",
        max_documents=100,
        queries_per_document=1,
        negatives=3,
        question_types="medical",
        dense="off",
        batch_documents=5,
        dev_fraction=0.25,
    )
    return {**base, **kw}


def test_pipeline_writes_judged_groups(gen, corpus_dir, settings, tiny_bi_encoder):
    settings.embedding_model = tiny_bi_encoder  # dense mining on a tiny random encoder: more candidates
    # A second passage answering "What causes Alder fever?" in other words: a false negative of mining.
    (corpus_dir / "99-alder-causes.txt").write_text("Alder fever is caused by a gene change plus early infections.")
    llm = gen.scripted()
    progress = []
    ref = generate_dataset(
        _params(corpus_dir, negatives=4, judge_depth=8, dense="on"),
        settings,
        llm=llm,
        restrict_paths=False,
        progress=lambda d, t, m: progress.append((d, t)),
    )
    groups = DatasetStore(settings).load("toy") + DatasetStore(settings).load("toy", split="dev")
    # 25 documents, one query each; the new document's query repeats document 00's: dropped
    assert len(groups) == ref.card.counts["groups"] == 24 and ref.card.skipped == {
        "duplicate": 1,
        "documents_without_groups": 1,
    }
    for g in groups:
        assert gen.truly_relevant(g.query, g.positive)
        assert not any(gen.truly_relevant(g.query, n) for n in g.negatives)  # judge removed false negatives
        assert len(g.negatives) == len(g.negative_ids) == len(g.negative_scores) == 4
        assert set(g.negative_scores) == {0.2}
    alder = [g for g in groups if g.query == "What causes Alder fever?"]
    assert len(alder) == 1 and alder[0].extra_positives  # the other wording became an extra positive
    card = ref.card
    assert card.llm == card.judge == "scripted"
    assert card.prompt_versions == {"querygen": "querygen.typed@1", "judge": "judge.relevance@1"}
    assert card.counts["documents_sampled"] == 25 and card.counts["queries_kept"] == 24
    assert card.label_stats["judged_relevant"] >= 1 and card.label_stats["judged_pairs"] > 0
    assert card.seconds["total"] > 0 and card.parameters["negatives"] == 4
    # batching: 5 batches of 5 documents, one generation call and one judge call each
    assert len(llm.calls) == 10 and len(llm.calls[0]["prompts"]) == 5
    assert progress[-1] == (25, 25)
    # split by document
    train_docs = {g.doc_id for g in DatasetStore(settings).load("toy")}
    dev_docs = {g.doc_id for g in DatasetStore(settings).load("toy", split="dev")}
    assert train_docs and dev_docs and not train_docs & dev_docs


def test_pipeline_without_judge_keeps_mined_negatives(gen, corpus_dir, settings):
    llm = gen.scripted()
    ref = generate_dataset(_params(corpus_dir, judge=False, negatives=2), settings, llm=llm, restrict_paths=False)
    assert ref.card.judge is None and "judge" not in ref.card.prompt_versions
    groups = DatasetStore(settings).load("toy")
    assert all(g.negative_scores == [] and len(g.negatives) == 2 for g in groups)
    # BM25's top candidates: the same condition's other aspects
    assert all(gen._condition(n) == gen._condition(g.query) for g in groups for n in g.negatives)
    assert all(call.get("choices") is None for call in llm.calls)  # the judge was never asked


def test_consistency_filter_drops_queries_that_do_not_find_their_own_document(gen, corpus_dir, settings):
    # A document whose generated question is about another condition: retrieval ranks that other
    # condition's documents first, so the round-trip filter drops it and counts it.
    (corpus_dir / "99-stray.txt").write_text("Stray notes: the clinic opens at nine on weekdays.")
    plain = generate_dataset(
        _params(corpus_dir, judge=False, negatives=2, output_name="plain"),
        settings,
        llm=gen.scripted(),
        restrict_paths=False,
    )
    strict = generate_dataset(
        _params(corpus_dir, judge=False, negatives=2, output_name="strict", consistency_depth=1),
        settings,
        llm=gen.scripted(),
        restrict_paths=False,
    )
    assert strict.card.skipped.get("inconsistent", 0) >= 1
    assert strict.card.counts["groups"] == plain.card.counts["groups"] - strict.card.skipped["inconsistent"]
    assert strict.card.parameters["consistency_depth"] == 1
    kept = DatasetStore(settings).load("strict") + DatasetStore(settings).load("strict", split="dev")
    assert all(gen.truly_relevant(g.query, g.positive) for g in kept)


def test_chroma_source(gen, corpus_dir, settings, tiny_bi_encoder):
    from adaptrank.core.docstore import DocStore
    from adaptrank.core.ingest import ingest

    settings.embedding_model = tiny_bi_encoder
    store = DocStore(settings)
    ingest(store, corpus_dir, "toycol", progress=False)
    ref = generate_dataset(
        {
            "source": "chroma",
            "collection": "toycol",
            "output_name": "fromchroma",
            "negatives": 2,
            "question_types": "medical",
        },
        settings,
        llm=gen.scripted(),
        docstore=store,
    )
    assert ref.card.source["kind"] == "chroma" and ref.card.extra["mining"]["retrievers"] == ["bm25", "dense:chroma"]
    assert ref.card.counts["groups"] == 24
    with pytest.raises(NotFoundError, match="unknown collection 'nope'"):
        generate_dataset(
            {"source": "chroma", "collection": "nope", "output_name": "x"}, settings, llm=gen.scripted(), docstore=store
        )


def test_bad_input_is_a_clear_error(gen, corpus_dir, settings, tmp_path):
    llm = gen.scripted()
    with pytest.raises(InputError, match="path: .*does not exist"):
        generate_dataset(_params(tmp_path / "missing"), settings, llm=llm, restrict_paths=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .txt/.md files"):
        generate_dataset(_params(tmp_path / "empty"), settings, llm=llm, restrict_paths=False)
    with pytest.raises(InputError, match="outside the allowed roots"):
        generate_dataset(_params(corpus_dir), settings, llm=llm, restrict_paths=True)
    with pytest.raises(ValueError, match=r"collection\n\s*Value error, is required"):  # pydantic names the field
        GenerateParams(source="chroma", output_name="x")
    with pytest.raises(ValueError, match="output_name"):
        GenerateParams(source="folder", path="x", output_name="../up")
    with pytest.raises(ValueError, match="queries_per_document"):
        GenerateParams(source="folder", path="x", output_name="x", queries_per_document=0)
    # an LLM that only writes garbage: every query dropped, and the run fails loudly
    garbage = ScriptedLLM(lambda p: "ok")
    with pytest.raises(AdaptRankError, match="no training groups.*too_short"):
        generate_dataset(_params(corpus_dir), settings, llm=garbage, restrict_paths=False)
    assert DatasetStore(settings).names() == []

    class Down(ScriptedLLM):
        def generate(self, prompts, **kw):
            raise LLMError("openai: failed after 5 attempts: APIConnectionError")

    with pytest.raises(LLMError, match="APIConnectionError"):
        generate_dataset(_params(corpus_dir), settings, llm=Down(lambda p: ""), restrict_paths=False)


def test_resumed_job_writes_the_same_dataset(gen, corpus_dir, settings):
    # The uninterrupted reference run.
    jobs = JobManager(settings)
    ref_llm = gen.scripted()
    jobs.register("generate", lambda h: generate_job(h, llm=ref_llm))
    info = jobs.wait(
        jobs.submit("generate", {**_params(corpus_dir, output_name="straight"), "_restrict_paths": False}).id, 60
    )
    assert info.state == JobState.succeeded, info.error
    straight = DatasetStore(settings).get("straight")

    # The same run, cancelled after its second batch, then resumed (here by a new manager, as
    # after a restart).
    stop_after = threading.Event()
    llm = gen.scripted()
    job_id = {}

    def cancel_midway(prompt):
        if len(llm.calls) == 4 and not stop_after.is_set():  # 2 batches generated and judged
            stop_after.set()
            jobs.cancel(job_id["id"])
        return gen.respond(prompt)

    llm.respond = cancel_midway
    jobs.register("generate", lambda h: generate_job(h, llm=llm))
    params = {**_params(corpus_dir, output_name="resumed"), "_restrict_paths": False}
    first = jobs.submit("generate", params)
    job_id["id"] = first.id
    info = jobs.wait(first.id, 60)
    assert info.state == JobState.cancelled and info.progress.done == 10  # 2 of 5 batches kept
    assert DatasetStore(settings).names() == ["straight"]  # nothing half-written
    jobs.close()

    again = JobManager(settings)
    resumed_llm = gen.scripted()
    again.register("generate", lambda h: generate_job(h, llm=resumed_llm))
    info = again.wait(again.resume(first.id).id, 60)
    assert info.state == JobState.succeeded, info.error
    assert info.result["dataset"] == "resumed" and info.attempts == 2
    # finished documents were not redone: 15 documents left, 3 batches x (generate + judge)
    assert len(resumed_llm.calls) == 6 and sum(len(c["prompts"]) for c in resumed_llm.calls[::2]) == 14
    resumed = DatasetStore(settings).get("resumed")
    for split in ("train", "dev"):
        assert resumed.file(split).read_text() == straight.file(split).read_text()
    assert resumed.card.counts == straight.card.counts and resumed.card.skipped == straight.card.skipped
    assert resumed.card.label_stats == straight.card.label_stats
    again.close()


def test_questions_the_documents_ask_themselves_become_groups(gen, corpus_dir, settings):
    """A passage that opens with a question (a FAQ entry) gives that question as a query of its own
    passage, with mined negatives and no LLM call; off, the dataset has only generated queries."""
    (corpus_dir / "98-alder-faq.txt").write_text(
        "How is Alder fever inherited? Alder fever runs in families in an autosomal recessive pattern."
    )
    ref = generate_dataset(
        _params(corpus_dir, judge=False, negatives=2), settings, llm=gen.scripted(), restrict_paths=False
    )
    groups = DatasetStore(settings).load("toy") + DatasetStore(settings).load("toy", split="dev")
    faq = [g for g in groups if g.meta["template"] == "corpus.heading"]
    assert [g.query for g in faq] == ["How is Alder fever inherited?"] and faq[0].query_type == "heading"
    assert faq[0].positive.endswith("autosomal recessive pattern.") and len(faq[0].negatives) == 2
    assert ref.card.counts["corpus_questions"] == 1 and "corpus_questions" not in ref.card.skipped
    off = generate_dataset(
        _params(corpus_dir, judge=False, negatives=2, corpus_questions=False, output_name="off"),
        settings,
        llm=gen.scripted(),
        restrict_paths=False,
    )
    plain = DatasetStore(settings).load("off") + DatasetStore(settings).load("off", split="dev")
    assert off.card.counts["corpus_questions"] == 0 and not [g for g in plain if g.query_type == "heading"]
    assert len(plain) == len(groups) - 1


def test_opening_question_skips_the_title_and_needs_an_answer():
    from adaptrank.training.headings import opening_question

    assert opening_question("Alder fever. What causes Alder fever? A gene change.", "Alder fever") == (
        "What causes Alder fever?"
    )
    assert opening_question("What causes Alder fever?") is None  # nothing answers it
    assert opening_question("Alder fever is common. What causes it? Nobody knows.") is None  # not the opening
    assert opening_question("These resources: - Clinic: How Are Fevers Treated? More.") is None  # not a question word


def test_time_budget_keeps_a_random_sample_and_resumes(gen, corpus_dir, settings, tmp_path, monkeypatch):
    from adaptrank.training.generate import pipeline

    class TwoBatches(pipeline.TimeBudget):  # the clock is TimeBudget's own test; here: the pipeline's side
        def fits_next(self) -> bool:
            return len(self.batches) < 2

    monkeypatch.setattr(pipeline, "TimeBudget", TwoBatches)
    ckpt = tmp_path / "ckpt"
    cut = generate_dataset(
        _params(corpus_dir, output_name="cut", max_minutes=1),
        settings,
        llm=gen.scripted(),
        restrict_paths=False,
        checkpoint_dir=ckpt,
    )
    sampled = cut.card.counts["documents_sampled"]
    assert sampled > 10 and cut.card.counts["documents_done"] == 10  # two batches of 5
    assert cut.card.extra["time_budget"] == {"max_minutes": 1.0, "stopped_after_documents": 10}
    store = DatasetStore(settings)
    docs = {g.doc_id for split in ("train", "dev") for g in store.load("cut", split=split)}
    assert 8 <= len(docs) <= 10

    monkeypatch.undo()
    # The same checkpoint without a budget finishes the rest, and equals a run that never stopped.
    full = generate_dataset(
        _params(corpus_dir, output_name="full"), settings, llm=gen.scripted(), restrict_paths=False, checkpoint_dir=ckpt
    )
    straight = generate_dataset(
        _params(corpus_dir, output_name="straight"), settings, llm=gen.scripted(), restrict_paths=False
    )
    assert full.card.counts["documents_done"] == sampled and "time_budget" not in full.card.extra
    every = sorted({g.doc_id for split in ("train", "dev") for g in store.load("straight", split=split)})
    assert docs < set(every) and not docs <= set(every[:10])  # a random sample of the documents, not the first ids
    for split in ("train", "dev"):
        assert full.file(split).read_text() == straight.file(split).read_text()


def test_time_budget_stops_when_the_next_batch_would_overrun(monkeypatch):
    from adaptrank.training.generate import budget

    now = [100.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    b = budget.TimeBudget(1.0, started=100.0)  # 60 s
    assert b.fits_next()  # no pace yet: the first batch always runs
    now[0] += 20
    b.batch_took(20)
    assert b.fits_next()  # 20 s spent + 20 s expected <= 60
    now[0] += 25
    b.batch_took(25)
    assert not b.fits_next()  # 45 s spent + 22.5 s expected > 60
    assert budget.TimeBudget(0, started=0.0, prior_batches=[1e9]).fits_next()  # 0: no budget
    resumed = budget.TimeBudget(1.0, started=now[0], prior_batches=[30, 30])
    assert resumed.elapsed() == 60 and not resumed.fits_next()  # a resumed run counts the time already spent
