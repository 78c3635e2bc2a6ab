"""The specificity filter: a query must be about its passage, not only about the passage's subject."""

from __future__ import annotations

from adaptrank.training.corpus import CorpusPassage
from adaptrank.training.specificity import Specificity

SECTIONS = {
    "cause": "Alkaptonuria. Mutations in the HGD gene cause alkaptonuria by blocking an enzyme.",
    "frequency": "Alkaptonuria. This condition is rare, affecting 1 in 250,000 people worldwide.",
    "treatment": "Alkaptonuria. Treatment aims to relieve joint pain; a low-protein diet may help.",
}


def _corpus() -> list[CorpusPassage]:
    out = [CorpusPassage(id=f"{k}#0", doc_id=k, text=t, title="Alkaptonuria") for k, t in SECTIONS.items()]
    out.append(CorpusPassage(id="alone#0", doc_id="alone", text="Gout is caused by uric acid crystals.", title="Gout"))
    # an untitled document in two chunks: its chunks are each other's siblings
    out.append(CorpusPassage(id="manual#0", doc_id="manual", text="Install the package with pip.", title=""))
    out.append(CorpusPassage(id="manual#1", doc_id="manual", text="Configure logging in the settings file.", title=""))
    return out


def test_a_question_about_the_passage_passes_one_about_the_subject_does_not():
    spec = Specificity(_corpus())
    assert spec("What causes alkaptonuria?", "cause#0")
    assert not spec("What causes alkaptonuria?", "frequency#0")  # drift: the causes section answers it
    assert spec("How rare is alkaptonuria?", "frequency#0")
    assert spec("How is alkaptonuria treated?", "treatment#0")
    assert not spec("What is alkaptonuria?", "treatment#0")  # no aspect word points at any section
    assert spec("What causes gout?", "alone#0")  # no siblings: nothing to confuse it with
    assert spec("How do I install the package?", "manual#0")
    assert not spec("How do I install the package?", "manual#1")
    assert spec("anything at all", "unknown-passage")
    assert spec.aspect("What causes alkaptonuria?", "cause#0") == {"cause"}


def test_best_sibling_breaks_the_tie_the_set_test_lets_through():
    """Both sections mention causes, so the set test passes the drifted query; by how much of each
    passage is about the aspect, the causes section wins and is named."""
    passages = [
        CorpusPassage(
            id="inherit#0",
            doc_id="inherit",
            title="Bethlem myopathy",
            text="Bethlem myopathy is inherited in an autosomal dominant pattern. Each child of an affected "
            "parent has a 50 percent chance of inheriting the condition, which is caused by mutations. "
            "Some people have a new mutation and no affected parent; the parent may be mosaic.",
        ),
        CorpusPassage(
            id="cause#0",
            doc_id="cause",
            title="Bethlem myopathy",
            text="Bethlem myopathy is caused by mutations in COL6A1; what causes the weakness is faulty collagen.",
        ),
    ]
    spec = Specificity(passages)
    query = "What causes Bethlem myopathy?"
    assert spec(query, "inherit#0")  # the set test: both contain "cause"
    assert spec.best_sibling(query, "inherit#0") == "cause#0"
    assert spec.best_sibling(query, "cause#0") is None
    assert spec.best_sibling("How is Bethlem myopathy inherited?", "inherit#0") is None
    assert spec.best_sibling("What is Bethlem myopathy?", "inherit#0") is None  # no aspect words: nothing to move to
    assert Specificity(_corpus()).best_sibling("What causes gout?", "alone#0") is None  # no siblings
    ranked = Specificity(passages, ranked=True)
    assert ranked.verdict(query, "inherit#0") == "sibling_more_specific" and not ranked(query, "inherit#0")
    assert ranked.verdict(query, "cause#0") is None and spec.verdict(query, "inherit#0") is None


def test_a_field_added_later_keeps_older_checkpoints_valid_at_its_default():
    import hashlib
    import json

    from adaptrank.training.generate.params import ADDED_FIELDS, LOG_FIELDS, GenerateParams

    p = GenerateParams(source="beir", path="x", output_name="a")
    # what a checkpoint before them hashed
    older = p.model_dump(exclude={"batch_documents", "max_minutes", *ADDED_FIELDS, *LOG_FIELDS})
    assert p.fingerprint() == hashlib.sha1(json.dumps(older, sort_keys=True).encode()).hexdigest()[:16]
    # a time budget says how much gets done, not how: a resumed run may change it
    assert p.fingerprint() == p.model_copy(update={"max_minutes": 5.0}).fingerprint()
    assert p.fingerprint() != p.model_copy(update={"specific_ranked": True}).fingerprint()
    # with a log, the log's settings are part of the fingerprint: a run with other ones starts afresh
    logged = p.model_copy(update={"queries": "log.txt"})
    assert logged.fingerprint() != logged.model_copy(update={"log_min_margin": 0.0}).fingerprint()
