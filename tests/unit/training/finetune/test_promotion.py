"""Promotion: a worse model is refused, a better one promoted, force and never are honoured.

That serving picks up a new active version while requests are in flight is checked once, in
tests/unit/core/test_modelstore.py (test_engine_follows_the_active_version_without_dropping_requests)."""

from __future__ import annotations

import pytest

from adaptrank.core.modelstore import ModelStore


def test_decisions():
    from adaptrank.training.promotion import decide

    better = decide("mrr@10", {"dev_mrr@10": 0.8}, {"dev_mrr@10": 0.7}, baseline="m@v1")
    worse = decide("mrr@10", {"dev_mrr@10": 0.6}, {"dev_mrr@10": 0.7}, baseline="m@v1")
    tie = decide("mrr@10", {"dev_mrr@10": 0.7}, {"dev_mrr@10": 0.7})
    small = decide("mrr@10", {"dev_mrr@10": 0.705}, {"dev_mrr@10": 0.7}, min_delta=0.01)
    assert better.promote and "0.8000 > 0.7000 (m@v1)" in better.reason
    assert not worse.promote and not tie.promote and not small.promote
    assert decide("mrr@10", {"dev_mrr@10": 0.1}, {"dev_mrr@10": 0.9}, force=True).promote
    assert not decide("mrr@10", {"dev_mrr@10": 0.9}, {"dev_mrr@10": 0.1}, force=False).promote
    assert not decide("mrr@10", {}, {}).promote  # no dev split: never automatic


def test_finetune_refuses_a_worse_model_and_keeps_the_active_one(settings, make_dataset, tiny_bi_encoder):
    """A run whose best dev weights are no better than the active model leaves it active."""
    from adaptrank.training.finetune import finetune

    make_dataset()
    store = ModelStore(settings.models_dir)
    common = dict(
        dataset="toy",
        output_name="toy-rr",
        method="query-encoder",
        base_model=tiny_bi_encoder,
        group_size=4,
        batch_size=8,
        warmup_ratio=0.0,
        patience=0,
        eval_every=5,
    )
    good = finetune({**common, "epochs": 6, "learning_rate": 3e-3}, settings)
    assert good.promoted and store.active_version("toy-rr") == good.version
    # A learning rate of ~0 cannot improve on the untrained tower, which is worse than the active model.
    bad = finetune({**common, "epochs": 1, "learning_rate": 1e-12}, settings)
    assert bad.baseline == f"toy-rr@{good.version}"
    assert bad.metrics_after["dev_mrr@10"] < bad.metrics_before["dev_mrr@10"]
    assert not bad.promoted and "not promoted" in bad.decision
    assert store.active_version("toy-rr") == good.version
    assert set(store.versions("toy-rr")) == {good.version, bad.version}  # kept for inspection, not served
    assert store.get("toy-rr", bad.version).card.extra["promotion"]["promote"] is False


def test_a_noisy_gain_does_not_clear_the_paired_margin():
    import numpy as np

    from adaptrank.training.promotion import decide, paired_lower_bound

    rng = np.random.default_rng(0)
    old = rng.uniform(0, 1, 60)
    noisy = old + rng.normal(0.01, 0.3, 60)  # a mean gain well inside the noise
    clear = old + rng.normal(0.08, 0.05, 60)
    means = lambda new: ({"dev_mrr@10": float(np.mean(new))}, {"dev_mrr@10": float(np.mean(old))})  # noqa: E731
    d_noisy = decide("mrr@10", *means(noisy), paired=(noisy, old))
    d_clear = decide("mrr@10", *means(clear), paired=(clear, old))
    assert d_noisy.new > d_noisy.baseline and not d_noisy.promote and "within noise" in d_noisy.reason
    assert d_clear.promote and d_clear.lower_bound > 0 and "lower bound" in d_clear.reason and d_clear.groups == 60
    assert paired_lower_bound(clear, old) == paired_lower_bound(clear, old)  # seeded: reproducible
    assert "\n" not in d_noisy.reason and "\n" not in d_clear.reason  # one line, as adapt prints it


def test_people_written_dev_questions_veto_a_model_that_loses_on_them():
    """A clear gain on the generated dev groups does not promote a model that loses on the dev
    questions people wrote (the documents' own, a query log); too few of them cannot veto."""
    import numpy as np

    from adaptrank.training.promotion import decide

    rng = np.random.default_rng(1)
    old = rng.uniform(0.2, 0.6, 80)
    new = old + 0.2  # generated dev groups: a clear, consistent gain
    common = dict(paired=(new, old))
    after, before = {"dev_mrr@10": float(new.mean())}, {"dev_mrr@10": float(old.mean())}
    worse, base = np.full(25, 0.5), np.full(25, 0.6)
    vetoed = decide("mrr@10", after, before, human=(worse, base), **common)
    assert not vetoed.promote and "people wrote" in vetoed.reason and vetoed.human_gain == pytest.approx(-0.1)
    assert vetoed.human_groups == 25 and vetoed.lower_bound > 0
    kept = decide("mrr@10", after, before, human=(base, worse), **common)
    assert kept.promote and "+0.1000" in kept.reason
    few = decide("mrr@10", after, before, human=(worse[:5], base[:5]), **common)
    assert few.promote and few.human_gain is None  # 5 groups: too few to veto
