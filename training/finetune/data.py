"""Which groups a run trains and evaluates on, and the dev metrics on them."""

from __future__ import annotations

import random
from typing import Any

from adaptrank.core.errors import InputError
from adaptrank.core.settings import Settings
from adaptrank.training.dataset import DatasetStore, Group, read_groups
from adaptrank.training.evaluate import ScorePairs, group_scores
from adaptrank.training.finetune.params import FinetuneParams


def select_groups(groups: list[Group], group_size: int, split: str) -> tuple[list[Group], int]:
    """Groups with at least ``group_size - 1`` negatives; a clear error when too few qualify."""
    if not groups:
        raise InputError("dataset", f"the {split} split has no groups")
    need = group_size - 1
    counts = sorted(len(g.negatives) for g in groups)
    if counts[-1] == 0:
        raise InputError(
            "dataset",
            f"none of the {len(groups)} {split} groups has a hard negative; LCE needs a positive and at "
            "least one negative per group (regenerate with negatives >= 1)",
        )
    kept = [g for g in groups if len(g.negatives) >= need]
    if len(kept) * 2 < len(groups):
        median = counts[len(counts) // 2]
        raise InputError(
            "group_size",
            f"is {group_size}, so each group needs {need} negatives, but only {len(kept)} of {len(groups)} "
            f"{split} groups have that many (negatives per group: min {counts[0]}, median {median}, "
            f"max {counts[-1]}); use group_size <= {median + 1}",
        )
    return kept, len(groups) - len(kept)


def load_dataset_groups(p: FinetuneParams, settings: Settings) -> tuple[str, list[Group], list[Group], int]:
    """(dataset ref "name@version", train groups, dev groups, dropped train groups)."""
    name, _, version = p.dataset.partition("@")
    ref = DatasetStore(settings).get(name, version or None)
    train = read_groups(ref.file("train"), allow_empty=True)
    dev = read_groups(ref.file("dev"), allow_empty=True)
    if not train:
        raise InputError("dataset", f"{ref.name}@{ref.version} has an empty train split")
    train, dropped = select_groups(train, p.group_size, "train")
    dev = [g for g in dev if g.negatives]
    if p.max_groups and len(train) > p.max_groups:
        rng = random.Random(p.seed)
        train = rng.sample(train, p.max_groups)
    return f"{ref.name}@{ref.version}", train, dev, dropped


def dev_metrics(score_pairs: ScorePairs, dev: list[Group]) -> tuple[dict[str, float], Any]:
    """Mean dev metrics (``dev_mrr@10``, ``dev_ndcg@10``) and the per-group ``[groups, 2]`` scores
    behind them: early stopping during training and the promotion gate after it both use these."""
    per_group = group_scores(score_pairs, dev)
    return {"dev_mrr@10": float(per_group[:, 0].mean()), "dev_ndcg@10": float(per_group[:, 1].mean())}, per_group
