"""ONNX Runtime path: export agrees with torch on padded batches, int8 ranks close, exports are
cached, and any failure falls back to torch (tiny models: the export takes about a second)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from adaptrank.core.engine import onnx as eo
from adaptrank.core.engine import registry  # cache_dir_for takes the registry's Resolved (engine-internal)
from adaptrank.core.engine.crossencoder import CrossEncoderScorer
from adaptrank.core.engine.models import load_scorer
from adaptrank.core.engine.tokens import encode_pairs, pad_batch
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings

pytest.importorskip("onnxruntime")

WORDS = [
    "gene",
    "protein",
    "cell",
    "disease",
    "symptom",
    "treatment",
    "inherited",
    "rare",
    "syndrome",
    "mutation",
    "enzyme",
    "liver",
]


def _pairs(n: int = 24, seed: int = 0) -> list[tuple[str, str]]:
    """Queries and passages of very different lengths, so batches carry a lot of padding."""
    rng = np.random.default_rng(seed)
    return [
        (" ".join(rng.choice(WORDS, int(rng.integers(1, 6)))), " ".join(rng.choice(WORDS, int(k))))
        for k in rng.integers(1, 90, n)
    ]


@pytest.fixture(scope="module")
def sharp_cross_encoder(tiny_cross_encoder, tmp_path_factory) -> str:
    """The tiny BERT with its weight matrices scaled x10: a freshly initialised tiny model scores
    every pair within ~1e-5 of each other, so any rounding reorders it; this one spreads scores
    out the way a trained model does, so rank agreement means something."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("sharp") / "model"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embeddings" not in name:
                param.mul_(10.0)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_cross_encoder).save_pretrained(path)
    return str(path)


def _load(path: str, home, **overrides):
    s = Settings(home=home, long_documents="truncate", max_length=64, **overrides)
    return load_scorer(f"cross-encoder:{path}", ModelStore(s.models_dir), s), s


def test_fp32_export_matches_torch_on_mixed_padded_batch(sharp_cross_encoder, tmp_path):
    ort_scorer, _ = _load(sharp_cross_encoder, tmp_path, onnx="fp32")
    assert ort_scorer.runtime_name == "onnxruntime-fp32"
    torch_scorer, _ = _load(sharp_cross_encoder, tmp_path, onnx="off")
    assert torch_scorer.runtime_name == "torch"

    pairs = _pairs()
    enc = encode_pairs(torch_scorer.tokenizer, pairs, 64, "truncate")
    lengths = [len(x) for x in enc.input_ids]
    assert max(lengths) - min(lengths) > 30  # one batch, heavily padded
    batch = pad_batch(enc, np.arange(len(enc)), torch_scorer.tokenizer.pad_token_id)
    np.testing.assert_allclose(ort_scorer.runtime(batch), torch_scorer.runtime(batch), atol=1e-4)
    # and end to end, through tokenization, length batching and the activation
    np.testing.assert_allclose(ort_scorer.score_pairs(pairs), torch_scorer.score_pairs(pairs), atol=1e-4)
    # a row's score does not depend on how much padding its batch has
    alone = ort_scorer.runtime(pad_batch(enc, np.array([int(np.argmin(lengths))]), 0))
    np.testing.assert_allclose(alone, ort_scorer.runtime(batch)[[int(np.argmin(lengths))]], atol=1e-5)


def test_int8_variant_ranks_close(sharp_cross_encoder, tmp_path):
    int8, _ = _load(sharp_cross_encoder, tmp_path, onnx="int8")
    assert int8.runtime_name == "onnxruntime-int8"
    exact, _ = _load(sharp_cross_encoder, tmp_path, onnx="off")
    pairs = _pairs(40, seed=1)
    a, b = int8.score_pairs(pairs), exact.score_pairs(pairs)
    assert not np.allclose(a, b, atol=1e-7)  # it really is the quantized graph
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    assert np.corrcoef(rank_a, rank_b)[0, 1] > 0.9  # Spearman


def test_export_is_cached_and_reused(tiny_cross_encoder, tmp_path, monkeypatch):
    calls = []
    real = eo.export_fp32
    monkeypatch.setattr(eo, "export_fp32", lambda *a, **k: calls.append(1) or real(*a, **k))
    _first, s = _load(tiny_cross_encoder, tmp_path, onnx="fp32")
    folder = eo.cache_dir_for(s, registry.resolve(f"cross-encoder:{tiny_cross_encoder}", ModelStore(s.models_dir)))
    assert (folder / eo.FP32_FILE).is_file() and (folder / eo.META_FILE).is_file()
    assert folder.is_relative_to(tmp_path / "cache" / "onnx")
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left behind
    stamp = (folder / eo.FP32_FILE).stat().st_mtime_ns
    second, _ = _load(tiny_cross_encoder, tmp_path, onnx="fp32")
    assert calls == [1]
    assert (folder / eo.FP32_FILE).stat().st_mtime_ns == stamp
    assert second.runtime_name == "onnxruntime-fp32"


def test_store_models_cache_inside_their_version(tiny_cross_encoder, tmp_path):
    import shutil

    s = Settings(home=tmp_path, long_documents="truncate", max_length=64, onnx="fp32")
    store = ModelStore(s.models_dir)
    with store.writing("mine", {"name": "mine", "version": "x", "backend": "cross-encoder"}, version="v1") as d:
        shutil.copytree(tiny_cross_encoder, d, dirs_exist_ok=True)
    store.activate("mine", "v1")
    scorer = load_scorer("mine", store, s)
    assert scorer.runtime_name == "onnxruntime-fp32"
    assert (store.get("mine").path / ".cache" / "onnx" / eo.RECIPE / eo.FP32_FILE).is_file()


def test_broken_export_falls_back_to_torch(tiny_cross_encoder, tmp_path, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr("torch.onnx.export", boom)
    with caplog.at_level(logging.WARNING, logger="adaptrank.core.engine.onnx"):
        scorer, _ = _load(tiny_cross_encoder, tmp_path, onnx="fp32")
    assert scorer.runtime_name == "torch"
    assert "staying on torch" in caplog.text and "exporter exploded" in caplog.text
    reference = CrossEncoderScorer(tiny_cross_encoder, max_length=64, mode="truncate")
    np.testing.assert_allclose(scorer.score_pairs(_pairs()), reference.score_pairs(_pairs()), atol=1e-6)
    assert not list((tmp_path / "cache" / "onnx").rglob("*.onnx"))


def test_export_that_disagrees_with_torch_is_rejected(tiny_cross_encoder, tmp_path, monkeypatch, caplog):
    """The padding check: an export that scores padded rows differently is never trusted."""
    real_call = eo.OrtRuntime.__call__

    def off_by_padding(self, batch):
        out = real_call(self, batch)
        return out + 0.01 * (batch["attention_mask"].numpy() == 0).sum(axis=1)

    monkeypatch.setattr(eo.OrtRuntime, "__call__", off_by_padding)
    with caplog.at_level(logging.WARNING, logger="adaptrank.core.engine.onnx"):
        scorer, _s = _load(tiny_cross_encoder, tmp_path, onnx="fp32")
    assert scorer.runtime_name == "torch"
    assert "disagrees with torch" in caplog.text
    assert not list((tmp_path / "cache" / "onnx").rglob(eo.FP32_FILE))


@pytest.mark.parametrize(("ort_faster", "expected"), [(True, "onnxruntime-fp32"), (False, "torch")])
def test_auto_chooses_by_measurement_and_remembers(tiny_cross_encoder, tmp_path, monkeypatch, ort_faster, expected):
    calls = []

    def fake_measure(scorer, runtime, repeats=3):
        calls.append(1)
        return {"torch_s": 1.0, "ort_s": 0.5 if ort_faster else 2.0}

    monkeypatch.setattr(eo, "measure", fake_measure)
    first, _ = _load(tiny_cross_encoder, tmp_path, onnx="auto")
    second, _ = _load(tiny_cross_encoder, tmp_path, onnx="auto")
    assert first.runtime_name == second.runtime_name == expected
    assert calls == [1]  # the decision is cached with the export


def test_fast_precision_picks_bf16_or_int8(tiny_cross_encoder, tmp_path, monkeypatch):
    import torch

    import adaptrank.core.engine.crossencoder as ce

    # oneDNN's packed bf16 linears need AVX512 (or AVX-NE-CONVERT): on an AVX2-only CPU, where
    # cpu_has_native_bf16 is False and "fast" never picks bf16, the bf16 half cannot run
    if ce.cpu_has_native_bf16() or torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        monkeypatch.setattr(ce, "cpu_has_native_bf16", lambda: True)
        bf16, _ = _load(tiny_cross_encoder, tmp_path, precision="fast", onnx="auto")
        assert bf16.runtime_name == "torch-bf16"
        exact, _ = _load(tiny_cross_encoder, tmp_path, onnx="off")
        pairs = _pairs(30, seed=2)
        assert np.max(np.abs(bf16.score_pairs(pairs) - exact.score_pairs(pairs))) < 0.05
        assert bf16.runtime.model is not bf16.hf_model  # a bf16 copy; the fp32 weights stay for exports

    monkeypatch.setattr(ce, "cpu_has_native_bf16", lambda: False)
    int8, _ = _load(tiny_cross_encoder, tmp_path, precision="fast", onnx="auto")
    assert int8.runtime_name == "onnxruntime-int8"
    plain, _ = _load(tiny_cross_encoder, tmp_path, precision="fast", onnx="off")
    assert plain.runtime_name == "torch"


def test_packed_torch_runtime_matches_plain_and_fuses_gelu(sharp_cross_encoder):
    """The exact CPU path runs pre-packed oneDNN linears; same fp32 scores as plain eager torch."""
    from adaptrank.core.engine.crossencoder import PackedLinear, TorchRuntime, packing_available

    if not packing_available():
        pytest.skip("no oneDNN packed linear in this torch build")
    scorer = CrossEncoderScorer(sharp_cross_encoder, max_length=64, mode="truncate")
    assert scorer.runtime.packed
    layer = scorer.runtime.model.bert.encoder.layer[0]
    assert isinstance(layer.intermediate.dense, PackedLinear) and layer.intermediate.dense.activation == "gelu"
    assert not isinstance(scorer.hf_model.bert.encoder.layer[0].intermediate.dense, PackedLinear)  # a copy
    enc = encode_pairs(scorer.tokenizer, _pairs(), 64, "truncate")
    batch = pad_batch(enc, np.arange(len(enc)), scorer.tokenizer.pad_token_id)
    plain = TorchRuntime(scorer.hf_model, "cpu", pack=False)
    np.testing.assert_allclose(scorer.runtime(batch), plain(batch), atol=1e-5)


def test_measure_times_both_runtimes_on_the_models_own_inputs(tiny_cross_encoder, tmp_path):
    scorer, _s = _load(tiny_cross_encoder, tmp_path, onnx="fp32")
    plain = CrossEncoderScorer(tiny_cross_encoder, max_length=64, mode="truncate")
    timing = eo.measure(plain, scorer.runtime, repeats=1)
    assert timing["torch_s"] > 0 and timing["ort_s"] > 0
    batch = eo.timing_batch(plain, rows=4, length=32)
    assert batch["input_ids"].shape == (4, 32) and bool(batch["attention_mask"].all())
