"""Candidate mining (BM25 + dense, fused, source excluded) and LLM labelling (judge on/off)."""

from __future__ import annotations

import pytest

from adaptrank.core.llm import LLMError, ScriptedLLM
from adaptrank.training.corpus import Corpus, CorpusPassage, load_corpus
from adaptrank.training.labeling import label_candidates
from adaptrank.training.mining import Candidate, CandidateMiner


def _corpus(gen, corpus_dir, settings):
    return load_corpus(settings, "folder", path=str(corpus_dir), restrict_paths=False)


def test_bm25_mining_excludes_the_source_document_and_its_copies(gen, settings):
    passages = [
        CorpusPassage("a#0", "a", "Gout is caused by uric acid crystals in the joints."),
        CorpusPassage("a#1", "a", "Gout attacks: uric acid crystals cause pain in the joints."),
        CorpusPassage("copy#0", "copy", "Gout is caused by uric acid crystals in the joints."),  # same text, other id
        CorpusPassage("b#0", "b", "Uric acid levels rise with a diet rich in purines; gout may follow."),
        CorpusPassage("c#0", "c", "Asthma narrows the airways of the lungs."),
    ]
    miner = CandidateMiner(Corpus("folder", "mem", passages), settings, depth=5, dense="off")
    [cands] = miner.mine(["what causes gout uric acid"], ["a"])
    ids = [c.id for c in cands]
    assert ids[0] == "b#0" and "a#0" not in ids and "a#1" not in ids and "copy#0" not in ids
    assert all(c.bm25_rank and c.dense_rank is None for c in cands)
    assert miner.describe()["retrievers"] == ["bm25"]


def test_source_ranks_say_where_each_query_finds_its_own_document(gen, settings):
    passages = [
        CorpusPassage("a#0", "a", "Gout is caused by uric acid crystals in the joints."),
        CorpusPassage("b#0", "b", "Asthma narrows the airways of the lungs."),
        CorpusPassage("b#1", "b", "Asthma is treated with inhalers that open the airways."),
        CorpusPassage("c#0", "c", "Eczema makes the skin dry and itchy."),
    ]
    miner = CandidateMiner(Corpus("folder", "mem", passages), settings, depth=2, dense="off")
    queries = ["uric acid crystals gout", "inhalers airways asthma", "uric acid crystals gout skin", "volcano eruption"]
    cands, ranks = miner.mine_with_source_ranks(queries, ["a", "b", "c", "c"])
    assert ranks[0] == 1 and ranks[1] == 1  # each finds its own document first
    assert ranks[2] is not None and ranks[2] > 1  # a gout query "written for" eczema finds gout first
    assert ranks[3] is None  # nothing matches: the source is not retrieved at all
    assert [c.id for c in cands[0]] == [c.id for c in miner.mine(queries[:1], ["a"])[0]]  # same candidates as mine()


def test_dense_and_bm25_are_fused(gen, corpus_dir, settings):
    corpus = _corpus(gen, corpus_dir, settings)
    miner = CandidateMiner(corpus, settings, depth=10, dense="auto", cache_dir=settings.home / "ckpt")
    assert miner.dense_mode == "memory"  # a small file corpus: embedded in memory
    assert list((settings.home / "ckpt").glob("embeddings-*.npy"))  # cached for a resume
    source = "00-causes.txt"
    [cands] = miner.mine(["What causes Alder fever?"], [source])
    assert len(cands) == 10 and all(c.doc_id != source for c in cands)
    assert any(c.bm25_rank and c.dense_rank for c in cands)  # both retrievers agree on some
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    # the same condition's other aspects are the hardest negatives
    assert {c.doc_id for c in cands[:2]} == {"00-symptoms.txt", "00-treatment.txt"}


def _cands(n):
    return [Candidate(id=f"p{i}", doc_id=f"d{i}", text=f"passage {i}", score=1.0 / (i + 1)) for i in range(n)]


def test_judge_turns_false_negatives_into_extra_positives():
    relevant = {"passage 1", "passage 4"}
    judge = ScriptedLLM(
        lambda p: "yes" if p[-1]["content"].split("Passage: ")[1].split("\n")[0] in relevant else "no",
        score=lambda p: 0.9 if p[-1]["content"].split("Passage: ")[1].split("\n")[0] in relevant else 0.1,
    )
    [res], counts = label_candidates(judge, ["q"], [_cands(10)], negatives=4, judge_depth=6)
    assert [c.id for c in res.extra_positives] == ["p1", "p4"]
    assert [c.id for c in res.negatives] == ["p0", "p2", "p3", "p5"]
    assert res.negative_scores == [0.1, 0.1, 0.1, 0.1]
    assert counts == {"judged": 6, "judged_relevant": 2}
    assert len(judge.calls) == 1 and judge.calls[0]["choices"] == ["yes", "no"]
    # depth smaller than the negatives wanted: the rest come unjudged, score None
    [res], counts = label_candidates(judge, ["q"], [_cands(10)], negatives=4, judge_depth=2)
    assert [c.id for c in res.negatives] == ["p0", "p2", "p3", "p4"] and res.negative_scores == [0.1, None, None, None]
    assert counts["unjudged_negatives"] == 3
    # a probability threshold instead of the label
    [res], _ = label_candidates(judge, ["q"], [_cands(6)], negatives=3, judge_depth=6, threshold=0.05)
    assert len(res.extra_positives) == 6 and res.negatives == []


def test_judge_off_takes_the_top_mined():
    [res], counts = label_candidates(None, ["q"], [_cands(10)], negatives=3)
    assert [c.id for c in res.negatives] == ["p0", "p1", "p2"] and res.negative_scores == [] and not counts


class FlakyJudge(ScriptedLLM):
    """Fails any batch holding a poisoned passage; judges single items except the poisoned one."""

    def judge(self, prompts, choices):
        if any("passage 2" in p[-1]["content"] for p in prompts):
            raise LLMError("garbage")
        return [("no", 0.3) for _ in prompts]


def test_a_failing_judge_item_is_skipped_and_counted_but_all_failing_raises():
    [res], counts = label_candidates(FlakyJudge(lambda p: "no"), ["q"], [_cands(5)], negatives=4, judge_depth=5)
    assert [c.id for c in res.negatives] == ["p0", "p1", "p3", "p4"] and counts["judge_errors"] == 1

    class Down(ScriptedLLM):
        def judge(self, prompts, choices):
            raise LLMError("connection refused")

    with pytest.raises(LLMError, match="every item"):
        label_candidates(Down(lambda p: ""), ["q"], [_cands(3)], negatives=2)


class LikelihoodLLM(ScriptedLLM):
    """Scores log p(query | passage) by word overlap: a stand-in with the real method's shape."""

    likelihood_judge = True

    def loglikelihood(self, prompts, continuations):
        self.calls.append({"loglikelihood": len(prompts)})
        out = []
        for p, q in zip(prompts, continuations, strict=False):
            passage = p[-1]["content"].split("Passage: ", 1)[1].lower()
            words = q.lower().rstrip("?").split()
            out.append(-1.0 + sum(w in passage for w in words) / len(words))
        return out


def test_likelihood_judge_compares_with_the_own_passage():
    from adaptrank.training.labeling import resolve_judge_method

    judge = LikelihoodLLM(lambda p: "no")
    assert (
        resolve_judge_method(judge, "auto") == "likelihood"
        and resolve_judge_method(ScriptedLLM(lambda p: ""), "auto") == "choice"
    )
    cands = [
        Candidate(
            "a", "da", "what causes gout? uric acid crystals", 0.5
        ),  # explains the query as well as the own passage
        Candidate("b", "db", "asthma narrows the airways", 0.4),
        Candidate("c", "dc", "gout pain", 0.3),
    ]
    [res], _counts = label_candidates(
        judge,
        ["what causes gout"],
        [cands],
        negatives=2,
        judge_depth=3,
        method="auto",
        positives=["what causes gout: uric acid"],
        margin=0.0,
    )
    assert [c.id for c in res.extra_positives] == ["a"] and [c.id for c in res.negatives] == ["b", "c"]
    assert res.negative_scores[0] < res.negative_scores[1] < 0.5  # sigmoid of the likelihood gap
    assert judge.calls == [{"loglikelihood": 4}]  # 3 candidates + the own passage, one call
    # the default margin asks a candidate to beat the own passage clearly: "a" only ties it
    [strict], _ = label_candidates(
        judge, ["what causes gout"], [cands], negatives=3, judge_depth=3, positives=["what causes gout: uric acid"]
    )
    assert strict.extra_positives == [] and len(strict.negatives) == 3
    with pytest.raises(Exception, match="own passage"):
        label_candidates(judge, ["q"], [cands], negatives=2, method="likelihood")
    with pytest.raises(Exception, match="cannot score likelihoods"):
        label_candidates(ScriptedLLM(lambda p: ""), ["q"], [cands], negatives=2, method="likelihood", positives=["x"])
