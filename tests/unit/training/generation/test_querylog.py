"""A query log: reading it, labelling its queries with the teacher, and generation that trains on
them and writes in their style (scripted LLM, toy corpus)."""

from __future__ import annotations

import json

import pytest

from adaptrank.core.errors import InputError
from adaptrank.core.settings import Settings
from adaptrank.training.corpus import load_corpus
from adaptrank.training.dataset import DatasetStore, split_by_document
from adaptrank.training.generate import generate_dataset
from adaptrank.training.mining import CandidateMiner
from adaptrank.training.querylog import Teacher, label_queries, read_queries, style_examples

LOG = [
    "What causes Birch syndrome?",
    "How is Cedar disease treated?",
    "What are the symptoms of Elm anemia?",
    "What causes Fir dystrophy?",
    "How is Alder fever treated?",
]


def test_read_queries_txt_and_jsonl(tmp_path):
    txt = tmp_path / "log.txt"
    txt.write_text("  what causes gout?\n\nwhat causes   gout?\nhow is asthma treated?\n")
    assert read_queries(txt) == ["what causes gout?", "how is asthma treated?"]
    jl = tmp_path / "log.jsonl"
    jl.write_text(json.dumps({"text": "a b c"}) + "\n" + json.dumps({"query": "d e f"}) + "\n")
    assert read_queries(jl) == ["a b c", "d e f"]
    jl.write_text(json.dumps({"q": "x"}) + "\n")
    with pytest.raises(InputError, match="queries: .* line 1 has no string 'text'"):
        read_queries(jl)
    (tmp_path / "long.txt").write_text("x" * 501 + "\n")
    with pytest.raises(InputError, match="queries: .*501 characters; the limit is 500"):
        read_queries(tmp_path / "long.txt")
    with pytest.raises(InputError, match="queries: .*outside the allowed roots"):
        read_queries(txt, roots=[(tmp_path / "elsewhere").resolve()])


def test_the_teacher_labels_log_queries(gen, corpus_dir, settings, tiny_bi_encoder):
    settings.embedding_model = tiny_bi_encoder
    corpus = load_corpus(settings, "folder", path=str(corpus_dir), restrict_paths=False)
    miner = CandidateMiner(corpus, settings, depth=10, dense="off")
    import numpy as np

    # the scripted judge (no likelihoods): p(yes) 0.9 on the true answer, 0.2 elsewhere; an embedding
    # that sees no difference (constant cosine), so the judge's log-odds alone must carry the choice
    teacher = Teacher(gen.scripted(), lambda t: np.full((len(t), 4), 0.5))
    groups, counts = label_queries(LOG, miner, teacher, negatives=3, depth=6)
    assert counts["labelled"] == len(groups) == len(LOG), dict(counts)
    for g in groups:
        assert gen.truly_relevant(g.query, g.positive), (g.query, g.positive)
        assert not any(gen.truly_relevant(g.query, n) for n in g.negatives)
        assert g.meta["source"] == "query_log" and g.query_type == "log"
    # a teacher that cannot tell the best candidate from the runner-up by min_margin labels nothing
    unsure, ucounts = label_queries(LOG, miner, teacher, negatives=3, depth=6, min_margin=50.0)
    assert unsure == [] and ucounts["unsure"] == len(LOG)
    ex = style_examples(groups, n=2)
    assert len(ex) == 2 and all(u.startswith("Passage: ") for u, _ in ex) and {q for _, q in ex} <= set(LOG)
    assert len({q.split()[0:3][0] + q.split()[1] for _, q in ex}) == 2  # two different shapes


@pytest.mark.parametrize(("log_examples", "log_train"), [(False, False), (True, True)])
def test_generation_with_a_query_log(gen, corpus_dir, settings, tmp_path, log_examples, log_train):
    log = tmp_path / "log.txt"
    log.write_text("\n".join(LOG) + "\n")
    llm = gen.scripted()
    ref = generate_dataset(
        dict(
            source="folder",
            path=str(corpus_dir),
            output_name="toy",
            queries_per_document=1,
            negatives=3,
            dense="off",
            batch_documents=8,
            dev_fraction=0.25,
            judge=False,
            queries=str(log),
            log_examples=log_examples,
            log_train=log_train,
        ),
        settings,
        llm=llm,
        restrict_paths=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    train = DatasetStore(settings).load("toy")
    dev = DatasetStore(settings).load("toy", split="dev")
    groups = train + dev
    from_log = [g for g in groups if g.meta.get("source") == "query_log"]
    assert ref.card.counts["log_queries_labelled"] == len(LOG)
    if log_train:
        assert {g.query for g in from_log} == set(LOG)
    else:  # the labelled log is dev only; a log group whose document trains is left out
        stats = ref.card.extra["query_log"]
        assert not [g for g in train if g.meta.get("source") == "query_log"]
        assert (
            stats["dev_groups"] > 0
            and len(from_log) == stats["dev_groups"]
            and stats["dev_groups"] + stats["left_out_document_in_train"] == len(LOG)
        )
        assert not {g.doc_id for g in from_log} & {g.doc_id for g in train}
        # the generated groups split exactly as they would without a log
        generated = [g for g in groups if g.meta.get("source") != "query_log"]
        assert {g.doc_id for g in split_by_document(generated, 0.25, 0)[0]} == {g.doc_id for g in train}
    # with log_examples the generation prompts carry log queries as few-shot turns; by default they do not
    gen_prompts = [c["prompts"] for c in llm.calls if "choices" not in c]
    shots = {m["content"] for p in gen_prompts[-1] for m in p if m["role"] == "assistant"}
    if log_examples:
        assert ref.card.prompt_versions["querygen"] == "querygen.focused@1+log"
        assert shots and shots <= set(LOG)
    else:
        assert ref.card.prompt_versions["querygen"] == "querygen.typed@1"
        assert gen_prompts and not shots & set(LOG)
        assert "style_examples" not in ref.card.extra["query_log"]
    # generated queries for the log's passages are not duplicated from the log
    assert len({g.query for g in groups}) == len(groups)
    # a resumed run reads the labelled log back from the checkpoint
    assert (tmp_path / "ckpt" / "query_log.json").is_file()
    with pytest.raises(InputError, match="queries: .*outside the allowed roots"):
        generate_dataset(
            dict(source="folder", path=str(corpus_dir), output_name="toy2", judge=False, dense="off", queries=str(log)),
            Settings(home=settings.home, allowed_roots=[corpus_dir]),
            llm=gen.scripted(),
            restrict_paths=True,
        )
