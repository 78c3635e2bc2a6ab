"""``get_llm(settings, backend=None, model=None)``: the one way to get an LLM.

Backends are a table of lazily imported loaders (like the scoring engine's registry), so the
heavy or optional ones (transformers weights, ``openai``, ``vllm``, ``llama_cpp``) are imported
only when asked for, and a missing extra says which ``pip install`` fixes it. Heavy backends
are built once per process and shared (the embedded model takes seconds to dequantize and
hundreds of MB of RAM); ``sampling`` is per MCP request and never cached.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import LLM
from adaptrank.core.settings import Settings

#: backend name -> "module:function" taking (settings, model, **options) -> LLM
BACKENDS: dict[str, str] = {
    "transformers": "adaptrank.core.llm.factory:_transformers",
    "llamacpp": "adaptrank.core.llm.factory:_llamacpp",
    "openai": "adaptrank.core.llm.factory:_openai",
    "vllm": "adaptrank.core.llm.factory:_vllm",
    "sampling": "adaptrank.core.llm.factory:_sampling",
}
UNCACHED = {"sampling"}

_cache: dict[tuple, LLM] = {}
_cache_lock = threading.Lock()


def get_llm(settings: Settings, backend: str | None = None, model: str | None = None, **options: Any) -> LLM:
    """The LLM for ``backend`` (default ``settings.llm_backend``) and ``model`` (default
    ``settings.llm_model``). ``options`` go to the backend (``ctx=`` for ``sampling``)."""
    backend = backend or settings.llm_backend
    if backend not in BACKENDS:
        raise InputError("llm_backend", f"unknown LLM backend {backend!r} (known: {sorted(BACKENDS)})")
    model = model or settings.llm_model
    module, _, func = BACKENDS[backend].partition(":")
    loader = getattr(importlib.import_module(module), func)
    if backend in UNCACHED:
        return loader(settings, model, **options)
    endpoint = (settings.openai_base_url, settings.openai_timeout, settings.openai_max_retries)
    key = (
        backend,
        model,
        settings.device,
        endpoint if backend == "openai" else None,
        settings.llm_dtype if backend == "transformers" else None,
        tuple(sorted((k, repr(v)) for k, v in options.items())),
    )
    with _cache_lock:
        llm = _cache.get(key)
        if llm is None:
            llm = _cache[key] = loader(settings, model, **options)
    return llm


def cached_llms() -> list[LLM]:
    """The backends built so far and kept for reuse (not ``sampling``, which is per request)."""
    with _cache_lock:
        return list(_cache.values())


def _transformers(settings: Settings, model: str | None, **options: Any) -> LLM:
    from adaptrank.core.llm.hf import TransformersLLM

    options.setdefault("dtype", settings.llm_dtype)
    return TransformersLLM(model, device=settings.device, **options)


def _llamacpp(settings: Settings, model: str | None, **options: Any) -> LLM:
    from adaptrank.core.llm.llamacpp import LlamaCppLLM

    return LlamaCppLLM(model, **options)


def _openai(settings: Settings, model: str | None, **options: Any) -> LLM:
    from adaptrank.core.llm.openai_api import OpenAICompatibleLLM

    options.setdefault("concurrency", settings.openai_concurrency)
    options.setdefault("timeout", settings.openai_timeout)
    options.setdefault("max_retries", settings.openai_max_retries)
    return OpenAICompatibleLLM(model, base_url=settings.openai_base_url, api_key=settings.openai_api_key, **options)


def _vllm(settings: Settings, model: str | None, **options: Any) -> LLM:
    from adaptrank.core.llm.vllm_backend import VLLMBackend

    return VLLMBackend(model, **options)


def _sampling(settings: Settings, model: str | None, ctx: Any = None, **options: Any) -> LLM:
    from adaptrank.core.llm.sampling import SamplingLLM

    return SamplingLLM(ctx, model_hint=model, **options)
