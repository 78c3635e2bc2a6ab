"""Promotion: a worse model is refused, a better one promoted, force and never are honoured, and
serving picks up a promotion while requests are in flight without dropping any."""

from __future__ import annotations

import shutil
import threading
import time

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
    common = dict(dataset="toy", output_name="toy-rr", method="query-encoder", base_model=tiny_bi_encoder,
                  group_size=4, batch_size=8, warmup_ratio=0.0, patience=0, eval_every=5)
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


def _copy_ce(store, src, version):
    with store.writing("live", {"backend": "cross-encoder", "base_model": src}, version=version) as d:
        shutil.copytree(src, d, dirs_exist_ok=True)


def test_promotion_while_requests_are_in_flight(settings, tiny_cross_encoder, tmp_path):
    import torch
    from sentence_transformers import CrossEncoder

    from adaptrank.core.engine import Reranker

    store = ModelStore(settings.models_dir)
    _copy_ce(store, tiny_cross_encoder, "v1")
    store.activate("live", "v1")
    ce = CrossEncoder(tiny_cross_encoder, num_labels=1)
    with torch.no_grad():
        ce.model.classifier.bias += 3.0  # a visibly different model
    ce.save(str(tmp_path / "v2"))
    _copy_ce(store, str(tmp_path / "v2"), "v2")

    rr = Reranker(settings=settings, store=store)
    seen: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 400:  # bounded
            n += 1
            try:
                r = rr.rerank(f"query {i} {n}", ["alpha passage", "beta passage", "gamma passage"], model="live")
                assert len(r.results) == 3
                seen.append(r.version)
            except BaseException as exc:  # noqa: BLE001 - any failure is a dropped request
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while "v1" not in seen and time.time() < deadline:
        time.sleep(0.01)
    store.activate("live", "v2")
    mark = len(seen)
    while "v2" not in seen[mark:] and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(30)
    rr.close()
    assert not errors, errors[:3]
    assert "v1" in seen and "v2" in seen
    assert seen[-1] == "v2" and "v1" not in seen[-4:]  # after the switch, new requests get v2


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
