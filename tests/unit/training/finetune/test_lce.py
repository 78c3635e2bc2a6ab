"""LCE equals the hand-computed softmax cross-entropy, and equals upstream MNRL without in-batch negatives."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn


def test_lce_on_a_known_matrix():
    from adaptrank.training.lce import lce

    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    row1 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    row2 = math.log(3)
    assert lce(scores).item() == pytest.approx((row1 + row2) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="group>=2"):
        lce(torch.zeros(3, 1))


def _batch():
    queries = ["what is an apple", "where do rivers flow"]
    cols = [
        ["an apple is a fruit", "rivers flow to the sea"],  # positives
        ["engines burn fuel", "violins have strings"],
        ["copper conducts", "tigers are cats"],
    ]
    return [queries, *cols]


def _logits(ce, inputs):
    with torch.no_grad():
        rows = []
        for j, q in enumerate(inputs[0]):
            pairs = [(q, col[j]) for col in inputs[1:]]
            rows.append(ce.predict(pairs, activation_fn=nn.Identity(), convert_to_tensor=True).float())
        return torch.stack(rows)


def test_lce_loss_equals_hand_computed_value(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    from adaptrank.training.lce import LCELoss

    ce = CrossEncoder(tiny_cross_encoder, num_labels=1)
    ce.eval()  # no dropout: the loss and the hand computation see the same logits
    inputs = _batch()
    s = _logits(ce, inputs)
    by_hand = sum(-s[i, 0] + torch.logsumexp(s[i], 0) for i in range(len(s))) / len(s)
    with torch.no_grad():
        loss = LCELoss(ce)(inputs, None)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5, abs=1e-6)


def test_upstream_mnrl_without_in_batch_negatives_is_lce(tiny_cross_encoder):
    """sentence-transformers' MNRL with identity activation and scale 1 is LCE once it draws no
    in-batch negatives (batch size 1 leaves it none to draw)."""
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    from adaptrank.training.lce import LCELoss

    ce = CrossEncoder(tiny_cross_encoder, num_labels=1)
    ce.eval()
    inputs = _batch()
    one = [[col[0]] for col in inputs]
    upstream = MultipleNegativesRankingLoss(ce, num_negatives=None, scale=1.0, activation_fn=nn.Identity())
    with torch.no_grad():
        assert upstream(one, None).item() == pytest.approx(LCELoss(ce)(one, None).item(), rel=1e-6)
        # with two queries upstream would borrow the other query's passages; LCE must not
        assert LCELoss(ce)(inputs, None).item() != pytest.approx(upstream(inputs, None).item(), rel=1e-4)


def test_residual_prior_is_added_before_the_softmax(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    from adaptrank.training.lce import LCELoss, lce
    from adaptrank.training.residual import zero_head

    ce = CrossEncoder(tiny_cross_encoder, num_labels=1)
    ce.eval()
    inputs = _batch()
    prior = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1]])
    tau = 0.05
    with torch.no_grad():
        got = LCELoss(ce, prior_weight=1 / tau)(inputs, [prior[0], prior[1]]).item()
        want = lce(_logits(ce, inputs) + prior / tau).item()
    assert got == pytest.approx(want, rel=1e-5)
    zero_head(ce)  # step 0 of the residual model: the loss is the prior's own LCE
    with torch.no_grad():
        assert LCELoss(ce, prior_weight=1 / tau)(inputs, prior).item() == pytest.approx(
            lce(prior / tau).item(), rel=1e-5
        )


def test_frozen_passage_lce_by_hand():
    """The query-encoder's loss: LCE of cos(q, frozen passage)/tau; with in-batch negatives, every
    passage of the batch is a candidate (each one once)."""
    from adaptrank.training.residual import FrozenPassageLCE

    torch.manual_seed(0)
    bank = nn.functional.normalize(torch.randn(5, 4), dim=-1)
    q = nn.functional.normalize(torch.randn(2, 4), dim=-1)

    class Tower(nn.Module):
        def forward(self, features):
            return {"sentence_embedding": features["q"]}

    labels = torch.tensor([[0, 1, 2], [3, 1, 4]])  # passage 1 is a negative of both queries
    tau = 0.1
    local = FrozenPassageLCE(Tower(), bank, tau)([{"q": q}], labels)
    s = torch.stack([q[i] @ bank[labels[i]].T for i in range(2)]) / tau
    want = sum(-s[i, 0] + torch.logsumexp(s[i], 0) for i in range(2)) / 2
    assert local.item() == pytest.approx(want.item(), rel=1e-5)
    wide = FrozenPassageLCE(Tower(), bank, tau, in_batch=True)([{"q": q}], labels)
    s = q @ bank.T / tau  # the batch holds passages 0-4, each once
    want = (-s[0, 0] + torch.logsumexp(s[0], 0) - s[1, 3] + torch.logsumexp(s[1], 0)) / 2
    assert wide.item() == pytest.approx(want.item(), rel=1e-5)
