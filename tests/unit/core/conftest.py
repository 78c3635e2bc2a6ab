"""Fixtures for core's unit tests: a tiny chat model for the transformers backend and a document
store on the tiny bi-encoder (docstore and ingest)."""

from __future__ import annotations

import pytest

from adaptrank.core.docstore import DocStore


@pytest.fixture
def store(settings, tiny_bi_encoder):
    settings.embedding_model = tiny_bi_encoder
    return DocStore(settings)


@pytest.fixture(scope="session")
def tiny_chat_lm(tmp_path_factory) -> str:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template (read from
    the offline GGUF; no weights dequantized): the transformers backend's code paths in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adaptrank.core.llm.hf import default_gguf_path

    gguf = default_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    out = tmp_path_factory.mktemp("tiny-lm") / "model"
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
