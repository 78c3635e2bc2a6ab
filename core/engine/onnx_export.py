"""Exporting a cross-encoder to ONNX, and its int8 variant.

sentence-transformers' own ``backend="onnx"`` needs optimum, which does not resolve against
transformers 5, so we export with ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic
batch and sequence axes) from a copy of the model switched to *eager* attention: that graph is the
one ``onnxruntime.transformers.optimizer`` knows how to fuse (EmbedLayerNormalization, Attention,
BiasGelu, SkipLayerNormalization), while the SDPA graph of transformers 5 is not fused. The int8
variant is ``quantize_dynamic`` of the fused graph (weights int8 per channel, activations quantized
on the fly: VNNI/AMX-int8 kernels in MLAS). Each file is written to a temp name and renamed, so a
crash never leaves half a model that a later load would trust.

Checking an export against torch, caching it and swapping the runtime: :mod:`adaptrank.core.engine.onnx`.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

#: bump when the export recipe changes: old cached exports are then ignored
RECIPE = "ts17-eager-fused-pc7-1"
#: model types whose graphs the BERT fusions in onnxruntime.transformers understand
_FUSABLE = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert", "mpnet"}


class ExportError(RuntimeError):
    """The export or its check against torch failed; the caller stays on torch."""


def _atomic_target(final: Path):
    """A temp path beside ``final`` (same filesystem, so ``os.replace`` is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".onnx", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def _dummy_inputs(vocab_size: int) -> dict[str, torch.Tensor]:
    """Two rows of different lengths, so the traced graph keeps the padding mask live."""
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(2, 16, dtype=torch.long)}


def export_fp32(hf_model: torch.nn.Module, out: Path, *, fuse: bool = True) -> dict[str, Any]:
    """Export ``hf_model`` (a ``*ForSequenceClassification``) to ``out``; fuse BERT-style graphs.

    Returns what the export did (for ``meta.json``). Raises :class:`ExportError` on failure.
    """
    import onnx

    model = copy.deepcopy(hf_model).float().eval()
    cfg = model.config
    if getattr(cfg, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    dummy = _dummy_inputs(getattr(cfg, "vocab_size", 1000))
    import inspect

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    if getattr(cfg, "type_vocab_size", 2) < 2 and "token_type_ids" in names:
        names.remove("token_type_ids")
    raw = _atomic_target(out)
    info: dict[str, Any] = {"inputs": names}
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                model,
                tuple(dummy[n] for n in names),
                str(raw),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        final_src = raw
        model_type = getattr(cfg, "model_type", "")
        if fuse and model_type in _FUSABLE:
            from onnxruntime.transformers.optimizer import optimize_model

            heads = getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_heads", 0)
            hidden = getattr(cfg, "hidden_size", 0) or getattr(cfg, "dim", 0)
            opt = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
            stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
            info["fused"] = stats
            fused = _atomic_target(out)
            opt.save_model_to_file(str(fused))
            raw.unlink(missing_ok=True)
            final_src = fused
        onnx.checker.check_model(str(final_src))
        os.replace(final_src, out)
    except Exception as exc:
        raw.unlink(missing_ok=True)
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for stray in out.parent.glob(f".{out.stem}.*.onnx"):
            stray.unlink(missing_ok=True)
    return info


def quantize_int8(fp32_path: Path, out: Path) -> None:
    """Dynamic int8 quantization (7-bit weights per channel, activations uint8 on the fly)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(out)
    try:
        quantize_dynamic(
            str(fp32_path),
            str(tmp),
            weight_type=QuantType.QInt8,
            # per-output-channel weight scales: closer to fp32 than per tensor (figures: docs/engine.md, "Measured")
            per_channel=True,
            # 7-bit weights: x86 CPUs without VNNI (AVX2 only) multiply u8 x s8 with VPMADDUBSW, whose
            # 16-bit pair sums saturate on 8-bit weights (ranking Spearman 0.89 vs fp32 on an AVX2 EPYC)
            reduce_range=True,
            # fused contrib ops defeat shape inference; their outputs are float
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
        os.replace(tmp, out)
    except Exception as exc:
        raise ExportError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
