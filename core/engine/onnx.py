"""ONNX Runtime for cross-encoders on CPU: export once, cache, check, and swap the runtime.

How a model is exported (fp32 and int8): :mod:`adaptrank.core.engine.onnx_export`. Here: the
runtime, where exports are cached, the check against torch and the choice of runtime.

The runtime takes the very padded batches :mod:`tokens` cuts for torch, so scores differ only by
arithmetic. Every export is checked against torch on one batch of mixed, padded lengths before it
is trusted (a broken padding mask shows there first); a failed export or check logs a warning and
leaves the scorer on torch.

Exports are cached: for model-store models under ``models/<name>/<version>/.cache/onnx/``, for
other models under ``<home>/cache/onnx/<fingerprint>/``; every file is replaced atomically.
"""

import hashlib
import json
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptrank.core.engine.crossencoder import TorchRuntime
from adaptrank.core.engine.onnx_export import RECIPE, ExportError, export_fp32, quantize_int8
from adaptrank.core.engine.tokens import encode_pairs, pad_batch
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.versioned import write_atomic

log = logging.getLogger(__name__)

FP32_FILE = "model-fp32.onnx"
INT8_FILE = "model-int8.onnx"
META_FILE = "meta.json"
#: largest |ORT - torch| logit difference an fp32 export may show on the check batch
FP32_TOLERANCE = 1e-4

_export_lock = threading.Lock()


@dataclass
class OrtRuntime:
    """Runs the padded batches of :mod:`tokens` through an ONNX Runtime session; one logit per row."""

    path: Path
    threads: int
    variant: str = "fp32"

    def __post_init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, np.int32 if "int32" in i.type else np.int64) for i in self.session.get_inputs()]
        self._output = self.session.get_outputs()[0].name

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self._inputs]

    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        feeds = {}
        for name, dtype in self._inputs:
            value = batch.get(name)
            if value is None:  # e.g. token_type_ids for a graph that has them but a tokenizer that does not
                value = torch.zeros_like(batch["input_ids"])
            feeds[name] = value.numpy().astype(dtype, copy=False)
        return self.session.run([self._output], feeds)[0][:, 0].astype(np.float32)


# -- where exports live -------------------------------------------------------------------------


def cache_dir_for(settings, resolved) -> Path:
    """The export folder for a resolved model spec (see the module docstring)."""
    if resolved.store_name:
        ref = ModelStore(settings.models_dir).get(resolved.store_name, resolved.version)
        return ModelStore(settings.models_dir).cache_dir(ref, "onnx") / RECIPE
    key = f"{Path(resolved.path).resolve() if resolved.path and Path(resolved.path).exists() else resolved.path}|{resolved.version}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(settings.home) / "cache" / "onnx" / digest / RECIPE


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# -- checks and the choice ----------------------------------------------------------------------


def check_batch(scorer) -> dict[str, torch.Tensor]:
    """One padded batch of mixed lengths (1 to ``max_length`` tokens) from the scorer's tokenizer."""
    words = "the cause of the disease is a change in one gene that makes a protein the cells need".split()
    pairs = [("what causes it?", " ".join(words * (1 + n))[: 3 + 60 * n]) for n in range(6)]
    pairs.append(("a longer question about how the condition is inherited in families", "yes"))
    enc = encode_pairs(scorer.tokenizer, pairs, min(scorer.max_length, 128), "truncate")
    return pad_batch(enc, np.arange(len(enc)), scorer.tokenizer.pad_token_id or 0)


def _torch_logits(scorer, batch: dict[str, torch.Tensor]) -> np.ndarray:
    runtime = scorer.runtime if isinstance(scorer.runtime, TorchRuntime) else TorchRuntime(scorer.hf_model, "cpu")
    return runtime(batch)


def _time(fn, batch, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - start)
    return best


def timing_batch(scorer, rows: int = 16, length: int = 128) -> dict[str, torch.Tensor]:
    """``rows`` full windows of ``length`` tokens, built by the scorer's own tokenizer (so the
    inputs are exactly the ones this model takes)."""
    length = min(length, scorer.max_length)
    text = "the cause of the disease is a change in one gene that makes a protein " * (length // 8 + 1)
    enc = encode_pairs(scorer.tokenizer, [("what causes it?", text)] * rows, length, "truncate")
    return pad_batch(enc, np.arange(rows), scorer.tokenizer.pad_token_id or 0)


def measure(scorer, ort_runtime: OrtRuntime, repeats: int = 3) -> dict[str, float]:
    """Seconds per timing batch, torch vs ORT, interleaved so a busy machine hurts both alike."""
    torch_rt = scorer.runtime if isinstance(scorer.runtime, TorchRuntime) else TorchRuntime(scorer.hf_model, "cpu")
    batch = timing_batch(scorer)
    torch_rt(batch), ort_runtime(batch)  # warm up
    t_torch, t_ort = float("inf"), float("inf")
    for _ in range(repeats):
        t_torch = min(t_torch, _time(torch_rt, batch, 1))
        t_ort = min(t_ort, _time(ort_runtime, batch, 1))
    return {"torch_s": t_torch, "ort_s": t_ort}


def _machine_key() -> str:
    return f"{platform.processor() or platform.machine()}|{os.cpu_count()}|{torch.get_num_threads()}"


# -- the entry point the registry calls ----------------------------------------------------------


def prepare(scorer, folder: Path, variant: str) -> tuple[Path, dict[str, Any]]:
    """The cached export for ``variant`` (fp32 | int8), exporting and checking it if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / META_FILE
    fp32 = folder / FP32_FILE
    with _export_lock:
        meta = _read_json(meta_path)
        if not fp32.is_file() or meta.get("recipe") != RECIPE:
            start = time.perf_counter()
            info = export_fp32(scorer.hf_model, fp32)
            runtime = OrtRuntime(fp32, torch.get_num_threads())
            batch = check_batch(scorer)
            ref = _torch_logits(scorer, batch)
            diff = float(np.max(np.abs(runtime(batch) - ref)))
            if not np.isfinite(diff) or diff > FP32_TOLERANCE * max(1.0, float(np.abs(ref).max())):
                fp32.unlink(missing_ok=True)
                raise ExportError(f"ONNX export disagrees with torch on padded batches (max |diff| {diff:.2e})")
            meta = {
                "recipe": RECIPE,
                "torch": torch.__version__,
                "onnxruntime": _ort_version(),
                "export_seconds": round(time.perf_counter() - start, 2),
                "check_max_abs_diff": diff,
                **info,
            }
            _write_json(meta_path, meta)
            log.info(
                "exported %s to ONNX in %.1fs (max |diff| vs torch %.1e)", scorer.name, meta["export_seconds"], diff
            )
        if variant == "int8":
            int8 = folder / INT8_FILE
            if not int8.is_file():
                quantize_int8(fp32, int8)
                runtime = OrtRuntime(int8, torch.get_num_threads(), "int8")
                if not np.all(np.isfinite(runtime(check_batch(scorer)))):
                    int8.unlink(missing_ok=True)
                    raise ExportError("int8 model returns non-finite scores")
            return int8, meta
        return fp32, meta


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def attach_onnx_runtime(scorer, settings, resolved) -> str:
    """Swap ``scorer.runtime`` to ONNX Runtime as ``settings.onnx`` asks; return the backend used.

    ``fp32`` and ``int8`` always swap (when the export works); ``auto`` exports fp32 and keeps it
    only where it measured faster than torch on this machine (the decision is cached with the
    export), or int8 under ``precision="fast"`` (the registry prefers bf16 where the CPU has it).
    Any failure logs a warning and leaves torch in place ("torch" is returned).
    """
    mode = settings.onnx
    if mode == "off":
        return "torch"
    try:
        folder = cache_dir_for(settings, resolved)
        variant = "int8" if mode == "int8" or settings.precision == "fast" else "fp32"
        path, meta = prepare(scorer, folder, variant)
        runtime = OrtRuntime(path, torch.get_num_threads(), variant)
        if mode == "auto" and variant == "fp32":
            decisions = meta.setdefault("auto", {})
            key = _machine_key()
            if key not in decisions:
                decisions[key] = measure(scorer, runtime)
                with _export_lock:
                    merged = _read_json(folder / META_FILE)
                    merged.setdefault("auto", {}).update(decisions)
                    _write_json(folder / META_FILE, merged)
            timing = decisions[key]
            if timing["ort_s"] >= timing["torch_s"]:
                log.info(
                    "onnx=auto: torch is faster for %s here (%.3fs vs %.3fs)",
                    scorer.name,
                    timing["torch_s"],
                    timing["ort_s"],
                )
                return "torch"
        scorer.runtime = runtime
        scorer.runtime_name = f"onnxruntime-{variant}"
        return scorer.runtime_name
    except Exception as exc:  # noqa: BLE001 - serving on torch beats not serving
        log.warning("ONNX Runtime path unavailable for %s, staying on torch: %s", getattr(scorer, "name", "?"), exc)
        return "torch"
