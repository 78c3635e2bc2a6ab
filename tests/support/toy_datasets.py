"""Toy datasets for the fine-tuning tests: a task whose answer is known.

Each topic word has passages that mention it; the query names the topic. A model that learns
anything ranks the passage with the query's word first, so LCE must fall and dev MRR must rise.
"""

from __future__ import annotations

import random

TOPICS = (
    "apple river engine violin glacier tomato saturn copper falcon cactus harbor pencil volcano lemon tiger "
    "marble rocket walnut desert anchor"
).split()
FILLERS = ["facts", "notes", "story"]


def toy_groups(n_negatives: int = 7, seed: int = 0, docs_per_topic: int = 2):
    from adaptrank.training.dataset import Group

    rng = random.Random(seed)
    passages = {(t, k): f"{t} {t} {t} {FILLERS[k % len(FILLERS)]} {t}" for t in TOPICS for k in range(docs_per_topic)}
    groups = []
    for (t, k), text in passages.items():
        others = [v for (t2, _), v in passages.items() if t2 != t]
        negs = rng.sample(others, n_negatives)
        groups.append(Group(query=f"tell me about {t}", positive=text, negatives=negs, doc_id=f"{t}-{k}"))
    return groups


def write_toy_dataset(settings, name: str = "toy", n_negatives: int = 7, groups=None, **kw):
    from adaptrank.training.dataset import DatasetStore

    groups = groups if groups is not None else toy_groups(n_negatives, **kw)
    return DatasetStore(settings).write(name, groups, {"source": {"kind": "toy"}}, dev_fraction=0.25, seed=0)
