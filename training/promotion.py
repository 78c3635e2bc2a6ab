"""Promotion: a new model version becomes active only if it beats what is serving now.

The comparison is on the new dataset's dev split (documents never trained on), with the same
metric for both: the baseline is the *active* version of the same model name, or the zero-shot
default when that name has none. The caller can force (``force=True``) or forbid (``force=False``)
the switch. Activation is one atomic pointer write (``ModelStore.activate``); the engine resolves
store names per request, so the next request uses the new version and in-flight ones finish on
the old one.
"""

from __future__ import annotations

from pydantic import BaseModel

from adaptrank.core.modelstore import ModelStore

ZERO_SHOT = "zero-shot"


class Decision(BaseModel):
    promote: bool
    reason: str
    metric: str
    new: float | None = None
    baseline: float | None = None
    baseline_model: str = ZERO_SHOT


def baseline_spec(store: ModelStore, name: str) -> str:
    """What a new version of ``name`` must beat: its active version, else the zero-shot default."""
    version = store.active_version(name)
    return f"{name}@{version}" if version else ZERO_SHOT


def decide(
    metric: str,
    after: dict[str, float],
    before: dict[str, float],
    *,
    baseline: str = ZERO_SHOT,
    force: bool | None = None,
    min_delta: float = 0.0,
) -> Decision:
    key = f"dev_{metric}"
    new, old = after.get(key), before.get(key)
    common = dict(metric=key, new=new, baseline=old, baseline_model=baseline)
    if force is True:
        return Decision(promote=True, reason="promoted: forced by the caller", **common)
    if force is False:
        return Decision(promote=False, reason="not promoted: the caller asked not to", **common)
    if new is None or old is None:
        return Decision(promote=False, reason="not promoted: no dev split to compare on (pass promote=true to force)", **common)
    if new > old + min_delta:
        return Decision(promote=True, reason=f"promoted: {key} {new:.4f} > {old:.4f} ({baseline})", **common)
    return Decision(
        promote=False,
        reason=f"not promoted: {key} {new:.4f} does not beat {old:.4f} ({baseline}) by more than {min_delta}",
        **common,
    )


def apply(store: ModelStore, name: str, version: str, decision: Decision) -> bool:
    if decision.promote:
        store.activate(name, version)
    return decision.promote


def promote(store: ModelStore, name: str, version: str) -> None:
    """Make ``name@version`` active now (``adaptrank models activate`` / forced promotion)."""
    store.activate(name, version)
