"""Comparison methods meet the same budget accounting and do what their names say."""

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification

from sensi_edge.baselines import global_selection, magnitude_scores, truncate, uniform
from sensi_edge.cost import Geometry, encoder_cost, encoder_params, head_params, neuron_params
from sensi_edge.methods import PlanInputs, plan_with
from sensi_edge.planner import Budget

from conftest import tiny_config

MINILM = Geometry(hidden=384, head_dim=32, heads=(12,) * 6, ffn=(1536,) * 6)


def _scores(seed=0):
    rnd = np.random.default_rng(seed)
    return [rnd.random(12) for _ in range(6)], [rnd.random(1536) for _ in range(6)]


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("kind", ["params", "flops"])
def test_every_method_meets_the_budget(fraction, kind):
    budget = Budget(kind, fraction)
    hs, ns = _scores()
    for plan in (uniform(MINILM, hs, ns, budget), global_selection(MINILM, hs, ns, budget, "random"),
                 truncate(MINILM, hs, ns, budget)):
        cost = encoder_cost(plan.trimmed, kind, 128)
        assert cost <= budget.target(MINILM), plan.source
        assert cost >= 0.9 * budget.target(MINILM), plan.source  # and uses most of it


def test_uniform_keeps_one_ratio_and_the_best_units():
    hs, ns = _scores(1)
    plan = uniform(MINILM, hs, ns, Budget("params", 0.5))
    assert len(set(plan.trimmed.heads)) == 1 and len(set(plan.trimmed.ffn)) == 1
    assert plan.trimmed.heads[0] / 12 == pytest.approx(plan.trimmed.ffn[0] / 1536, abs=0.1)
    kept = plan.keep_neurons[0]
    assert min(ns[0][list(kept)]) >= max(np.delete(ns[0], list(kept)))


def test_global_selection_prefers_score_per_cost():
    g = Geometry(hidden=8, head_dim=4, heads=(2,), ffn=(4,))
    # one head costs as much as many neurons: a head with a large score still loses to cheap, useful neurons
    hs = [np.array([1.0, 0.0])]
    ns = [np.array([0.5, 0.5, 0.5, 0.5])]
    budget = Budget("params", encoder_params(g.with_sizes([0], [4])), absolute=True)
    plan = global_selection(g, hs, ns, budget, "magnitude")
    assert head_params(g) / neuron_params(g) > 2 and plan.trimmed.heads == (0,) and plan.trimmed.ffn == (4,)


def test_truncate_keeps_bottom_layers_whole():
    hs, ns = _scores()
    plan = truncate(MINILM, hs, ns, Budget("params", 0.5))
    # removed layers keep their LayerNorms (and biases), so the third layer gives up a little to pay for them
    assert plan.trimmed.heads[:2] == (12, 12) and plan.trimmed.ffn[:2] == (1536,) * 2
    assert plan.trimmed.heads[2] >= 10 and plan.trimmed.ffn[2] >= 1400
    assert plan.trimmed.heads[3:] == (0, 0, 0) and plan.trimmed.ffn[3:] == (0, 0, 0)


def test_magnitude_scores_follow_weight_norms():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(layers=2, heads=4, hidden=32, ffn=16))
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight[8:16] *= 100  # head 1 of layer 0
        model.bert.encoder.layer[1].output.dense.weight[:, 3] *= 100  # neuron 3 of layer 1
    heads, neurons = magnitude_scores(model)
    assert int(np.argmax(heads[0])) == 1 and int(np.argmax(neurons[1])) == 3


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_random_keeps_heads_and_neurons_alike(fraction):
    """Random order without cost weighting: heads are not starved for cheap neurons."""
    from types import SimpleNamespace

    report = SimpleNamespace(geometry=MINILM, head_importance=None, neuron_importance=None, hash=lambda: "x")
    plan = plan_with("random", PlanInputs(report, Budget("params", fraction), seed=3))
    head_share = sum(plan.trimmed.heads) / sum(MINILM.heads)
    ffn_share = sum(plan.trimmed.ffn) / sum(MINILM.ffn)
    assert abs(head_share - ffn_share) < 0.15, (head_share, ffn_share)
    assert abs(ffn_share - fraction) < 0.1
    assert encoder_cost(plan.trimmed, "params", 128) <= Budget("params", fraction).target(MINILM)
