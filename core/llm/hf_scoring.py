"""Scoring with the embedded LLM instead of generating: choices and query likelihood.

``choices`` are scored, not generated: one forward pass over the prompts gives each choice's
first-token log-probability (the rest of a choice is forced once its first token is chosen), so
the judge gets a real probability for free. :meth:`LikelihoodScoring.loglikelihood` gives
log p(continuation | prompt), the query-likelihood relevance score small models are good at
(measured in docs/generation.md, "Measured").

:class:`LikelihoodScoring` is a mixin of :class:`adaptrank.core.llm.hf.TransformersLLM` on top of
:class:`adaptrank.core.llm.hf_batching.PrefixBatching`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from adaptrank.core.errors import InputError
from adaptrank.core.llm.base import Prompt
from adaptrank.core.llm.hf_batching import PrefixBatching


class LikelihoodScoring(PrefixBatching):
    _lock: threading.Lock
    _choice_cache: dict[tuple[str, ...], list[list[int]] | None]

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
        with self._lock, self._threads():
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            rows = self._encode(prompts)
            firsts = self._choice_tokens(choices)
            probs = torch.zeros((len(rows), len(choices)))
            if firsts is not None:
                k, cache = self._prefix(rows)
                for batch in self._paced(self._batches(rows)):
                    logp = self._last_logprobs([rows[i] for i in batch], k, cache)
                    for c, ids in enumerate(firsts):
                        probs[batch, c] = torch.logsumexp(logp[:, ids], dim=1).exp().float().cpu()
            else:
                probs = self._sequence_probs(rows, choices)
            probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
            self.stats.generated_tokens += len(rows)
            self.stats.seconds += time.perf_counter() - t0
        best = probs.argmax(dim=1).tolist()
        return [(choices[b], float(probs[i, 0])) for i, b in enumerate(best)]

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
        with self._lock, self._threads():
            t0 = time.perf_counter()
            self.stats.calls += 1
            self.stats.prompts += len(prompts)
            heads = self._encode(prompts)
            tails = [
                self.tokenizer(c, add_special_tokens=False)["input_ids"] or [self.tokenizer.eos_token_id]
                for c in continuations
            ]
            rows = [h + t for h, t in zip(heads, tails, strict=True)]
            k, cache = self._prefix(heads)  # shared by the prompts only, never into a continuation
            out = [0.0] * len(rows)
            for batch in self._paced(self._batches(rows)):
                m = max(len(tails[i]) for i in batch)
                logits, _, _ = self._forward([rows[i] for i in batch], k, cache, keep=m + 1)
                logp = logits.float().log_softmax(-1)
                for j, i in enumerate(batch):
                    n = len(tails[i])
                    target = torch.tensor(tails[i], device=logp.device)
                    picked = logp[j, -n - 1 : -1, :].gather(-1, target[:, None]).squeeze(-1)
                    out[i] = float(picked.mean())
            self.stats.seconds += time.perf_counter() - t0
        return out

    def _sequence_probs(self, rows: list[list[int]], choices: list[str]):
        """Whole-choice likelihoods (choices that share a first token)."""
        import torch

        choice_ids = [self.tokenizer.encode(c, add_special_tokens=False) for c in choices]
        out = torch.zeros((len(rows), len(choices)))
        for c, ids in enumerate(choice_ids):
            seqs = [r + ids for r in rows]
            for batch in self._paced(self._batches(seqs)):
                logits, input_ids, _ = self._forward([seqs[i] for i in batch])
                logp = logits[:, -len(ids) - 1 : -1, :].float().log_softmax(-1)
                target = input_ids[:, -len(ids) :]
                total = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)
                out[batch, c] = total.exp().cpu()
        return out
