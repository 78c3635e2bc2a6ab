"""Promotion: a new model version becomes active only if it beats what is serving now.

The comparison is on the new dataset's dev split (documents never trained on), with the same
metric for both: the baseline is the *active* version of the same model name, or the zero-shot
default when that name has none. A synthetic dev split is small and written by the same generator
as the training data, so a mean that moved is not enough: with per-group scores the gain must
also clear a paired bootstrap margin (its one-sided ``confidence`` lower bound must exceed
``min_delta``), so a noisy split cannot promote a model by luck. Generated queries share the generator's
blind spots, so a model can win on them and lose on people's questions (GARD, docs/finetuning.md):
where the dev split holds enough questions people wrote (the documents' own questions, a query
log), the new model must not lose on those either. The caller can force (``force=True``) or forbid (``force=False``)
the switch. Activation is one atomic pointer write (``ModelStore.activate``); the engine resolves
store names per request, so the next request uses the new version and in-flight ones finish on
the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from adaptrank.core.modelspec import ZERO_SHOT
from adaptrank.core.modelstore import ModelStore


class Decision(BaseModel):
    promote: bool
    reason: str
    metric: str
    new: float | None = None
    baseline: float | None = None
    baseline_model: str = ZERO_SHOT
    lower_bound: float | None = None  # one-sided bootstrap lower bound of the paired gain
    groups: int | None = None
    human_gain: float | None = None  # mean paired gain on the dev groups whose query a person wrote
    human_groups: int | None = None
    data: str = "dev"  # what the comparison ran on: the synthetic "dev" split or "real queries"


#: people-written dev questions needed before they can veto a promotion (fewer are too noisy to mean a loss)
MIN_HUMAN_GROUPS = 20

#: query types of groups whose query a person wrote rather than the generator
HUMAN_QUERY_TYPES = frozenset({"heading", "log"})


def baseline_spec(store: ModelStore, name: str) -> str:
    """What a new version of ``name`` must beat: its active version, else the zero-shot default."""
    version = store.active_version(name)
    return f"{name}@{version}" if version else ZERO_SHOT


def paired_lower_bound(
    new: Sequence[float], old: Sequence[float], confidence: float = 0.9, resamples: int = 2000, seed: int = 0
) -> float:
    """One-sided ``confidence`` lower bound of the mean paired gain ``new - old`` (bootstrap over
    groups, seeded: the same scores always give the same decision)."""
    d = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return float(np.quantile(means, 1.0 - confidence))


def decide(
    metric: str,
    after: dict[str, float],
    before: dict[str, float],
    *,
    baseline: str = ZERO_SHOT,
    force: bool | None = None,
    min_delta: float = 0.0,
    paired: tuple[Sequence[float], Sequence[float]] | None = None,
    confidence: float = 0.9,
    data: str = "dev",
    human: tuple[Sequence[float], Sequence[float]] | None = None,
    min_human_groups: int = MIN_HUMAN_GROUPS,
) -> Decision:
    """``paired``: per-group scores (new, baseline) of the metric; then the gain must clear the
    bootstrap margin too. ``human``: the same for the dev groups whose query a person wrote (the
    documents' own questions, a query log): with at least ``min_human_groups`` of them, the new
    model must not lose on them either. ``data`` names what was compared (for the one-line reason)."""
    key = f"dev_{metric}"
    new, old = after.get(key), before.get(key)
    common = dict(metric=key, new=new, baseline=old, baseline_model=baseline, data=data)
    if paired is not None:
        common.update(lower_bound=paired_lower_bound(*paired, confidence=confidence), groups=len(paired[0]))
    if human is not None and len(human[0]) >= min_human_groups:
        gain = float(np.mean(np.asarray(human[0], dtype=np.float64) - np.asarray(human[1], dtype=np.float64)))
        common.update(human_gain=gain, human_groups=len(human[0]))
    if force is True:
        return Decision(promote=True, reason="promoted: forced by the caller", **common)
    if force is False:
        return Decision(promote=False, reason="not promoted: the caller asked not to", **common)
    if new is None or old is None:
        return Decision(
            promote=False, reason="not promoted: no dev split to compare on (pass promote=true to force)", **common
        )
    what = f"{metric} on {data}" + (f" ({common['groups']} groups)" if paired is not None else "")
    if new <= old + min_delta:
        return Decision(
            promote=False,
            reason=f"not promoted: {what} {new:.4f} does not beat {old:.4f} ({baseline}) by more than {min_delta}",
            **common,
        )
    if paired is not None and not common["lower_bound"] > min_delta:
        return Decision(
            promote=False,
            reason=f"not promoted: {what} {new:.4f} vs {old:.4f} ({baseline}) is within noise: the gain's "
            f"{confidence:.0%} lower bound is {common['lower_bound']:+.4f}",
            **common,
        )
    if common.get("human_gain") is not None and common["human_gain"] < 0:
        return Decision(
            promote=False,
            reason=f"not promoted: {what} {new:.4f} > {old:.4f} ({baseline}), but it loses on the "
            f"{common['human_groups']} dev questions people wrote (the documents' own, a query log): "
            f"{common['human_gain']:+.4f}",
            **common,
        )
    bound = f", {confidence:.0%} lower bound {common['lower_bound']:+.4f}" if paired is not None else ""
    if common.get("human_gain") is not None:
        bound += f"; on the {common['human_groups']} people-written dev questions {common['human_gain']:+.4f}"
    return Decision(promote=True, reason=f"promoted: {what} {new:.4f} > {old:.4f} ({baseline}){bound}", **common)


def apply(store: ModelStore, name: str, version: str, decision: Decision) -> bool:
    if decision.promote:
        store.activate(name, version)
    return decision.promote
