"""Batched forward passes of the embedded LLM, with the shared-prefix KV cache.

Prompts are chat-templated, sorted by length and run in left-padded batches (one forward pass per
new token for the whole batch, which is where the CPU speed-up comes from). Prompts of one call
come from one template, so they share a long token prefix (system prompt, few-shot turns): its KV
cache is computed once per call and reused by every batch, which cuts prefill work roughly in half
for the generation templates.

:class:`PrefixBatching` is a mixin of :class:`adaptrank.core.llm.hf.TransformersLLM`: it uses the
backend's ``tokenizer``, ``model``, ``device``, ``batch_size``, ``max_input_tokens``,
``prefix_cache``, ``min_prefix_tokens`` and ``stats``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adaptrank.core.llm.base import Prompt
from adaptrank.core.llm.threads import ThreadGovernor


class PrefixBatching:
    tokenizer: Any
    model: Any
    device: str
    batch_size: int
    max_input_tokens: int
    prefix_cache: bool
    min_prefix_tokens: int
    stats: Any
    governor: ThreadGovernor | None = None  # None: torch's thread count is never touched

    # -- tokenization --------------------------------------------------------------------------
    def _encode(self, prompts: list[Prompt]) -> list[list[int]]:
        texts = [self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
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

    # -- threads --------------------------------------------------------------------------------
    def _paced(self, batches: list[list[int]]) -> Iterator[list[int]]:
        """The batches, with the thread count re-picked before each (:mod:`.threads`)."""
        for batch in batches:
            if self.governor is not None:
                self.governor.pick()
            yield batch

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """One call's thread scope: picked at the start (the shared prefix's forward runs before any
        batch), torch's process-wide count given back at the end."""
        if self.governor is None:
            yield
            return
        self.governor.pick()
        try:
            yield
        finally:
            self.governor.restore()

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
                    input_ids=input_ids[:, k:],
                    attention_mask=mask,
                    position_ids=positions[:, k:],
                    past_key_values=batch_cache,
                    logits_to_keep=keep,
                ).logits
        self.stats.prompt_tokens += int(mask.sum()) - k * len(rows)
        return logits, input_ids, mask
