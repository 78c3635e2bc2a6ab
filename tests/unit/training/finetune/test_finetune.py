"""The trainer on tiny models: loss falls and dev MRR rises on a toy task with a known answer;
the result is a store version with a full card; bad input fails clearly and writes nothing."""

from __future__ import annotations

import errno

import pytest

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.modelstore import ModelStore


def _params(**kw):
    base = dict(
        dataset="toy",
        output_name="toy-rr",
        epochs=6,
        batch_size=8,
        group_size=4,
        learning_rate=3e-3,
        eval_every=5,
        patience=0,
        warmup_ratio=0.0,
    )
    base.update(kw)
    return base


def _losses(history):
    return [h["loss"] for h in history if "loss" in h]


@pytest.mark.parametrize("method", ["query-encoder", "bi-encoder"])
def test_bi_encoder_methods_learn_the_toy_task(settings, toy_dataset, tiny_bi_encoder, method):
    from adaptrank.training.finetune import finetune

    res = finetune(_params(method=method, base_model=tiny_bi_encoder), settings)
    store = ModelStore(settings.models_dir)
    card = store.get("toy-rr", res.version).card
    losses = _losses(card.extra["history"])
    assert len(losses) >= 3 and losses[-1] < losses[0] * 0.7, losses
    dev = [h["dev"] for h in card.extra["history"] if "dev" in h]
    assert dev[0] < 0.9 and max(dev) > dev[0] + 0.1, dev  # step 0 (the untrained tiny base) vs trained
    assert res.metrics_after["dev_mrr@10"] == pytest.approx(max(dev), abs=1e-6)  # best weights kept, served alike
    assert card.dataset.startswith("toy@") and card.base_model.endswith("st")
    assert card.hyperparameters["group_size"] == 4 and card.metrics_after == res.metrics_after
    assert set(res.metrics_before) == {"dev_mrr@10", "dev_ndcg@10"} and res.baseline == "zero-shot"
    assert card.extra["promotion"]["baseline_model"] == "zero-shot"


def test_mix_weights_moves_the_tower_between_base_and_trained(tiny_bi_encoder):
    import torch
    from sentence_transformers import SentenceTransformer

    from adaptrank.training.finetune.query_encoder import mix_weights

    base = SentenceTransformer(tiny_bi_encoder)
    trained = SentenceTransformer(tiny_bi_encoder)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    key = next(k for k, v in base.state_dict().items() if v.is_floating_point())
    b, t = base.state_dict()[key].clone(), trained.state_dict()[key].clone()
    mix_weights(trained, base, 0.25)
    torch.testing.assert_close(trained.state_dict()[key], b + 0.25 * (t - b))
    mix_weights(trained, base, 0.0)
    torch.testing.assert_close(trained.state_dict()[key], b)


def test_interpolation_zero_serves_the_base_and_one_the_trained_tower(settings, toy_dataset, tiny_bi_encoder):
    """interpolation=0 is the base tower again (dev equals the baseline's), 1 is the trained one,
    and a mix in between lands in between on this toy task; the card records it."""
    from adaptrank.training.finetune import finetune

    runs = {a: finetune(_params(base_model=tiny_bi_encoder, interpolation=a), settings) for a in (0.0, 0.5, 1.0)}
    mrr = {a: r.metrics_after["dev_mrr@10"] for a, r in runs.items()}
    assert mrr[0.0] == pytest.approx(runs[0.0].metrics_before["dev_mrr@10"], abs=1e-6)
    assert mrr[1.0] > mrr[0.0] + 0.1, mrr
    assert mrr[0.0] < mrr[0.5] <= mrr[1.0] + 1e-6, mrr
    card = ModelStore(settings.models_dir).get("toy-rr", runs[0.5].version).card
    assert card.hyperparameters["interpolation"] == 0.5 and card.extra["interpolation"] == 0.5


def test_cross_encoder_lce_learns_the_toy_task(settings, make_dataset, make_groups, tiny_cross_encoder):
    """A random 2-layer cross-encoder needs many steps to learn token matching; the toy answer here
    is simpler (every positive opens with a marker word), which is enough to see LCE at work."""
    from adaptrank.training.finetune import finetune

    groups = make_groups()
    for g in groups:
        g.positive = "answer " + g.positive
    make_dataset(groups=groups)
    res = finetune(
        _params(method="cross-encoder", base_model=tiny_cross_encoder, epochs=6, learning_rate=1e-2), settings
    )
    card = ModelStore(settings.models_dir).get("toy-rr", res.version).card
    losses = _losses(card.extra["history"])
    assert losses[-1] < losses[0] * 0.7, losses
    assert card.backend == "cross-encoder" and card.loss == "lce"
    dev = [h["dev"] for h in card.extra["history"] if "dev" in h]
    assert max(dev) > dev[0] + 0.1, dev


def test_auto_picks_cross_encoder_for_a_pretrained_cross_encoder(settings, tiny_cross_encoder, tiny_bi_encoder):
    from adaptrank.training.finetune import FinetuneParams, resolve_base, resolve_method

    store = ModelStore(settings.models_dir)
    p = FinetuneParams(dataset="toy")
    assert resolve_method(p, resolve_base(tiny_cross_encoder, store)) == "cross-encoder"
    assert resolve_method(p, resolve_base(tiny_bi_encoder, store)) == "query-encoder"
    assert resolve_method(p, resolve_base(None, store)) == "query-encoder"


def test_g_larger_than_available_negatives_says_how_many(settings, tiny_bi_encoder, make_dataset):
    from adaptrank.training.finetune import finetune

    make_dataset(n_negatives=3)
    with pytest.raises(InputError, match=r"group_size.*needs 7 negatives.*max 3.*group_size <= 4"):
        finetune(_params(group_size=8, base_model=tiny_bi_encoder), settings)
    assert ModelStore(settings.models_dir).names() == []


def test_groups_without_negatives(settings, tiny_bi_encoder, make_dataset, make_groups):
    from adaptrank.training.finetune import finetune

    groups = make_groups()
    for g in groups:
        g.negatives = []
    make_dataset(groups=groups)
    with pytest.raises(InputError, match="has a hard negative"):
        finetune(_params(base_model=tiny_bi_encoder), settings)


def test_missing_empty_and_malformed_datasets(settings, tiny_bi_encoder, make_dataset):
    from adaptrank.training.finetune import finetune

    with pytest.raises(NotFoundError, match="does not exist"):
        finetune(_params(dataset="nope"), settings)
    ref = make_dataset()
    (ref.path / "train.jsonl").write_text('{"query": "q", "positive": "p"}\n')  # no doc_id
    with pytest.raises(InputError, match="line 1: doc_id"):
        finetune(_params(base_model=tiny_bi_encoder), settings)
    (ref.path / "train.jsonl").write_text("not json\n")
    with pytest.raises(InputError, match="line 1"):
        finetune(_params(base_model=tiny_bi_encoder), settings)
    (ref.path / "train.jsonl").write_text("")
    with pytest.raises(InputError, match="empty train split"):
        finetune(_params(base_model=tiny_bi_encoder), settings)
    with pytest.raises(InputError, match="dataset"):
        finetune(_params(dataset="../etc"), settings)
    assert ModelStore(settings.models_dir).names() == []


def test_unknown_base_model(settings, toy_dataset, tmp_path):
    from adaptrank.training.finetune import finetune

    with pytest.raises(InputError, match="base_model: unknown model 'no-such-model'"):
        finetune(_params(base_model="no-such-model"), settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="base_model.*no config.json"):
        finetune(_params(base_model=str(tmp_path / "empty")), settings)
    assert ModelStore(settings.models_dir).names() == []


def test_a_full_disk_during_save_writes_nothing(settings, toy_dataset, tiny_bi_encoder, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from adaptrank.training.finetune import finetune

    store = ModelStore(settings.models_dir)
    first = finetune(_params(base_model=tiny_bi_encoder, epochs=1, promote=True), settings)
    before = sorted(p.name for p in (settings.models_dir / "toy-rr").iterdir())

    def full(self, path, *a, **k):
        (__import__("pathlib").Path(path) / "partial.bin").parent.mkdir(parents=True, exist_ok=True)
        (__import__("pathlib").Path(path) / "partial.bin").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SentenceTransformer, "save", full)
    with pytest.raises(AdaptRankError, match="No space left on device.*nothing was written"):
        finetune(_params(base_model=tiny_bi_encoder, epochs=1, promote=True), settings)
    assert sorted(p.name for p in (settings.models_dir / "toy-rr").iterdir()) == before
    assert store.versions("toy-rr") == [first.version] and store.active_version("toy-rr") == first.version
