"""Tokenize once, window long passages, and cut length-sorted batches with dynamic padding.

Shared by every cross-encoder runtime (torch, ONNX Runtime), so they see the exact same inputs.

* ``truncate``: one window per pair, truncated ``longest_first`` to ``max_length`` — exactly what
  sentence-transformers' ``CrossEncoder.predict`` feeds the model.
* ``maxp``: a long passage is split into overlapping windows (``stride`` tokens of overlap), each
  window scored with the query, and the pair's score is the max over its windows (MaxP, Dai &
  Callan 2019), so the answer at the end of a long passage is not cut away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Mode = Literal["maxp", "truncate"]


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    owner: np.ndarray  # window -> pair index

    def __len__(self) -> int:
        return len(self.input_ids)


def _clip_queries(tokenizer, queries: list[str], limit: int) -> list[str]:
    """Cut queries longer than ``limit`` tokens at a token boundary (only_second needs room)."""
    enc = tokenizer(queries, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, offsets in zip(queries, enc["offset_mapping"], strict=True):
        out.append(q if len(offsets) <= limit else q[: offsets[limit - 1][1]])
    return out


def encode_pairs(
    tokenizer, pairs: list[tuple[str, str]], max_length: int, mode: Mode = "maxp", stride: int = 64
) -> Encoded:
    queries = [q for q, _ in pairs]
    docs = [d for _, d in pairs]
    if mode == "truncate":
        enc = tokenizer(queries, docs, truncation="longest_first", max_length=max_length)
        owner = np.arange(len(pairs))
    else:
        special = tokenizer.num_special_tokens_to_add(pair=True)
        queries = _clip_queries(tokenizer, queries, max(1, (max_length - special) // 2))
        budget = max_length - special - max(len(x) for x in tokenizer(queries, add_special_tokens=False)["input_ids"])
        stride = max(0, min(stride, budget - 1))
        enc = tokenizer(
            queries,
            docs,
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
        )
        owner = np.asarray(enc["overflow_to_sample_mapping"])
    tt = enc.get("token_type_ids")
    return Encoded(enc["input_ids"], tt, owner)


def length_batches(lengths: list[int], batch_tokens: int, max_batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length; each batch's padded size <= batch_tokens."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = lengths[order[start]]
        size = max(1, min(max_batch_size, batch_tokens // max(1, longest)))
        batches.append(order[start : start + size])
        start += size
    return batches


def pad_batch(enc: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest window of this batch only."""
    width = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    tts = torch.zeros((len(idx), width), dtype=torch.long) if enc.token_type_ids is not None else None
    for row, i in enumerate(idx):
        seq = enc.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if tts is not None:
            tts[row, : len(seq)] = torch.tensor(enc.token_type_ids[i])
    out = {"input_ids": ids, "attention_mask": mask}
    if tts is not None:
        out["token_type_ids"] = tts
    return out


def max_pool(window_scores: np.ndarray, owner: np.ndarray, n_pairs: int) -> np.ndarray:
    out = np.full(n_pairs, -np.inf, dtype=np.float64)
    np.maximum.at(out, owner, window_scores.astype(np.float64))
    return out
