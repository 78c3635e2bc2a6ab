"""Cross-encoder scoring through sentence-transformers' ``CrossEncoder``, with our fast path.

sentence-transformers loads the model (any HF id or local path, never remote code) and gives us
its activation; we drive the forward pass ourselves: one tokenization for the whole request,
length-sorted batches bounded by padded tokens, ``torch.inference_mode``, bf16/fp16 autocast on
CUDA, and MaxP windows for long passages (see :mod:`tokens`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import numpy as np
import torch

from adaptrank.core.engine.tokens import Mode, encode_pairs, length_batches, max_pool, pad_batch
from adaptrank.core.settings import Settings


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast_for(device: str) -> contextlib.AbstractContextManager:
    """bf16 where the GPU has it, else fp16; plain fp32 on CPU (the exact path)."""
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def training_autocast(device: str | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast for embeddings that only *train* a model (frozen passage banks, mining, the
    teacher): on a CPU with native bf16 it is several times faster and the vectors stay within
    1e-4 cosine of fp32 (docs/finetuning.md). Served scores never use it (they follow
    ``settings.precision``)."""
    device = pick_device(device)
    if device.startswith("cuda"):
        return autocast_for(device)
    return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_native_bf16() else contextlib.nullcontext()


def cpu_has_native_bf16() -> bool:
    """AMX-bf16 or AVX512-BF16: bf16 dot products in hardware (elsewhere bf16 is emulated and
    slower than fp32, so the fast path must not pick it there)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # older torch
        return False


def load_cross_encoder(path_or_id: str, device: str | None = None, num_labels: int | None = None):
    """A sentence-transformers CrossEncoder; ``trust_remote_code`` is always off."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path_or_id, device=pick_device(device), trust_remote_code=False, num_labels=num_labels)


class PackedLinear(torch.nn.Module):
    """``nn.Linear`` on oneDNN with its weight packed once, bias (and GELU) fused into the GEMM.

    Eager ``F.linear`` on CPU first copies the broadcast bias into the output and, in bf16,
    re-lays the weight out on every call; the erf-GELU after BERT's FFN-in projection is one more
    pass over the largest activation. Here all of that happens inside one oneDNN matmul — the
    same kernels ``torch.compile``'s freezing path uses, without minutes of compilation.
    """

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype, activation: str = "none") -> None:
        super().__init__()
        weight = linear.weight.detach().to(dtype)
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.activation = activation
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        algorithm = "none" if self.activation == "gelu" else ""
        y = torch.ops.mkldnn._linear_pointwise(
            x.reshape(-1, x.shape[-1]), self.weight, self.bias, self.activation, [], algorithm
        )
        return y.reshape(*lead, self.out_features)


def _is_erf_gelu(module: torch.nn.Module) -> bool:
    from transformers.activations import GELUActivation

    return isinstance(module, GELUActivation) and module.act is torch.nn.functional.gelu


def pack_linears(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Swap every ``nn.Linear`` for a :class:`PackedLinear` (in place); fuse BERT-style
    ``dense`` + erf-GELU pairs. Returns how many layers were packed."""
    packed = 0
    for parent in list(model.modules()):
        act = getattr(parent, "intermediate_act_fn", None)
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            fuse = name == "dense" and act is not None and _is_erf_gelu(act)
            setattr(parent, name, PackedLinear(child, dtype, "gelu" if fuse else "none"))
            if fuse:
                parent.intermediate_act_fn = torch.nn.Identity()
            packed += 1
    return packed


@functools.cache
def packing_available() -> bool:
    """oneDNN's packed linear exists and computes the right thing here (x86 torch with mkldnn)."""
    try:
        lin = torch.nn.Linear(8, 4)
        x = torch.randn(3, 8)
        with torch.inference_mode():
            out = PackedLinear(lin, torch.float32, "gelu")(x)
            ref = torch.nn.functional.gelu(lin(x))
        return bool(torch.allclose(out, ref, atol=1e-5))
    except Exception:  # noqa: BLE001 - no mkldnn, an old torch, an ARM build...
        return False


class TorchRuntime:
    """Runs padded batches through the HF model; returns one logit per row.

    On CPU the forward pass runs on a copy of the model whose linear layers are pre-packed for
    oneDNN (:func:`pack_linears`): the same fp32 arithmetic (differences ~1e-6), less overhead.
    ``dtype=torch.bfloat16`` on CPU makes that copy bf16 (AMX/AVX512-BF16 kernels): several
    times the fp32 GEMM rate at bf16 accuracy (logits within a few 1e-2), so it is the
    ``precision="fast"`` path, never the exact one. The original fp32 model stays untouched for
    ONNX exports and checks.
    """

    def __init__(
        self, model: torch.nn.Module, device: str, dtype: torch.dtype | None = None, pack: bool | None = None
    ) -> None:
        self.device = device
        self.dtype = dtype
        on_cpu = not device.startswith("cuda")
        if pack is None:
            pack = on_cpu and packing_available()
        if on_cpu and (dtype is not None or pack):
            import copy

            model = copy.deepcopy(model).to(dtype or torch.float32)
            if pack:
                pack_linears(model, dtype or torch.float32)
        self.packed = bool(pack)
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with autocast_for(self.device):
            logits = self.model(**batch).logits
        return logits[:, 0].float().cpu().numpy()


class CrossEncoderScorer:
    backend = "cross-encoder"

    def __init__(
        self,
        path_or_id: str,
        *,
        name: str | None = None,
        version: str = "0",
        device: str | None = None,
        max_length: int = 256,
        mode: Mode = "maxp",
        stride: int = 64,
        batch_tokens: int = 16384,
        max_batch_size: int = 128,
        runtime: Callable[[dict[str, torch.Tensor]], np.ndarray] | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.ce = load_cross_encoder(path_or_id, self.device)
        self.tokenizer = self.ce.tokenizer
        self.name = name or path_or_id
        self.version = version
        self.max_length = max_length
        self.mode = mode
        self.stride = stride
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.activation = self.ce.activation_fn or (lambda x: x)
        self.runtime = runtime or TorchRuntime(self.ce[0].model, self.device)
        #: what runs the forward pass: "torch", or "onnxruntime-fp32|int8" once attached
        self.runtime_name = "torch" if runtime is None else type(runtime).__name__

    @property
    def hf_model(self) -> torch.nn.Module:
        return self.ce[0].model

    def use_cpu_bf16(self) -> None:
        """Switch the forward pass to a bf16 copy of the weights (the CPU fast path)."""
        self.runtime = TorchRuntime(self.hf_model, self.device, torch.bfloat16)
        self.runtime_name = "torch-bf16"

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        enc = encode_pairs(self.tokenizer, pairs, self.max_length, self.mode, self.stride)
        lengths = [len(x) for x in enc.input_ids]
        logits = np.empty(len(enc), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        for idx in length_batches(lengths, self.batch_tokens, self.max_batch_size):
            logits[idx] = self.runtime(pad_batch(enc, idx, pad_id))
        with torch.inference_mode():
            scores = self.activation(torch.from_numpy(logits)).numpy()
        return max_pool(scores, enc.owner, len(pairs))

    @classmethod
    def from_settings(cls, path_or_id: str, settings: Settings, *, name: str, version: str) -> CrossEncoderScorer:
        """A scorer with the serving settings (device, max_length, long documents, batching)."""
        return cls(
            path_or_id,
            name=name,
            version=version,
            device=settings.device,
            max_length=settings.max_length,
            mode=settings.long_documents,
            stride=settings.window_stride,
            batch_tokens=settings.batch_tokens,
            max_batch_size=settings.max_batch_size,
        )
