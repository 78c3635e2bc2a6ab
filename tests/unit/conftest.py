"""Fixtures shared by more than one package's unit tests: the toy medical corpus with its scripted
LLM (generation, and the training tools and CLI in server/) and the toy fine-tuning datasets
(training/finetune, and the fine-tuning tools in server/)."""

from __future__ import annotations

from pathlib import Path

import medical_toy
import pytest
from toy_datasets import toy_groups, write_toy_dataset


@pytest.fixture
def gen():
    """The toy corpus writer, the scripted LLM and the ground truth (``tests/support/medical_toy.py``)."""
    return medical_toy


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    return medical_toy.write_corpus(tmp_path / "docs")


@pytest.fixture
def toy_dataset(settings):
    return write_toy_dataset(settings)


@pytest.fixture
def make_dataset(settings):
    """``make_dataset(n_negatives=7, groups=None)`` writes a toy dataset named ``toy``."""
    return lambda **kw: write_toy_dataset(settings, **kw)


@pytest.fixture
def make_groups():
    return toy_groups


@pytest.fixture
def tiny_zero_shot(monkeypatch, tiny_bi_encoder):
    """The 'zero-shot default' is the tiny bi-encoder here, so unit tests never load MiniLM
    (autouse in training/finetune; the fine-tuning tools tests ask for it by name)."""
    import adaptrank.core.engine.biencoder as biencoder

    monkeypatch.setattr(biencoder, "default_embedding_path", lambda: tiny_bi_encoder)
    return tiny_bi_encoder
