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
