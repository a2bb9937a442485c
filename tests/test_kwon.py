"""Kwon et al. 2022's three retraining-free steps, each against a case whose answer is known."""
import numpy as np
import pytest
import torch

from sensi_edge.cost import Geometry, encoder_cost, encoder_params, head_params, neuron_params
from sensi_edge.kwon import fisher_blocks, fold, mask_search, rearrange, search_and_rearrange, tune_masks
from sensi_edge.masking import MaskSet, attach
from sensi_edge.planner import Budget
from sensi_edge.sensitivity import unit_importance
from sensi_edge.surgery import apply_plan

from conftest import label_with_own_predictions, model_and_batches


def test_mask_search_picks_the_split_that_keeps_most_importance():
    g = Geometry(hidden=8, head_dim=4, heads=(2,), ffn=(8,))
    assert 8 * neuron_params(g) <= head_params(g) < 9 * neuron_params(g)
    # room for exactly one head, or for 8 neurons; the head (5.0) is worth more than 8 neurons (4.0)
    budget = Budget("params", encoder_params(g.with_sizes([1], [0])), absolute=True)
    keep_h, keep_n = mask_search(g, [np.array([5.0, 0.1])], [np.full(8, 0.5)], budget)
    assert keep_h == [[0]] and encoder_cost(g.with_sizes([len(keep_h[0])], [len(keep_n[0])]), "params", 128) <= budget.target(g)
    # ... and when the neurons are worth more, neurons win
    keep_h, keep_n = mask_search(g, [np.array([1.0, 0.1])], [np.full(8, 0.5)], budget)
    assert keep_h == [[]] and len(keep_n[0]) == 8


def test_rearrangement_sees_units_that_only_hurt_together():
    fisher = np.diag([1.0, 1.0, 1.5, 1.5])
    fisher[0, 1] = fisher[1, 0] = 2.0  # removing units 0 and 1 together costs 1 + 1 + 2*2 = 6
    kept = rearrange([2, 3], fisher)  # the diagonal alone would remove 0 and 1
    removed = sorted(set(range(4)) - set(kept))
    z = np.zeros(4)
    z[removed] = 1
    assert len(kept) == 2 and removed != [0, 1] and z @ fisher @ z == pytest.approx(2.5)
    assert rearrange([0, 1], np.eye(2)) == [0, 1] and rearrange([], np.eye(3)) == []


def test_fisher_blocks_diagonal_is_unit_importance():
    model, batches = model_and_batches(seed=2)
    batches = label_with_own_predictions(model, batches)
    heads, neurons = fisher_blocks(model, batches)
    hi, ni = unit_importance(model, batches)
    for block, diag in zip(heads + neurons, hi + ni):
        assert np.allclose(np.diag(block), diag, rtol=1e-4, atol=1e-10)
        assert np.allclose(block, block.T)


def test_mask_tuning_reconstructs_better_and_folds_exactly():
    model, batches = model_and_batches(seed=3)
    batches = label_with_own_predictions(model, batches)
    hi, ni = unit_importance(model, batches)
    plan = search_and_rearrange(Geometry(32, 8, (4, 4), (48, 48)), hi, ni, fisher_blocks(model, batches),
                                Budget("params", 0.5))
    tuned, log = tune_masks(model, plan, batches)
    assert log and all(e["error_tuned"] <= e["error_binary"] + 1e-9 for e in log)
    assert any(e["error_tuned"] < 0.95 * e["error_binary"] for e in log)
    for e in log:  # tuned values stay only where they lowered the held-out calibration loss
        values = (tuned.heads if e["kind"] == "attention" else tuned.neurons)[e["layer"]]
        kept = list((plan.keep_heads if e["kind"] == "attention" else plan.keep_neurons)[e["layer"]])
        assert e["accepted"] == (e["check_loss_tuned"] <= e["check_loss_binary"])
        if not e["accepted"]:
            assert torch.all(values[kept] == 1)
    probe = {k: v for k, v in batches[0].items() if k != "labels"}
    with torch.no_grad():
        dense = model(**probe).logits
        with attach(model, MaskSet.from_plan(plan)):
            binary = model(**probe).logits
        with attach(model, tuned):
            with_tuned = model(**probe).logits
    # tuned masks bring the pruned model closer to the dense one than the binary mask does
    assert (with_tuned - dense).abs().mean() < (binary - dense).abs().mean()
    fold(model, tuned)
    trimmed = apply_plan(model, plan)
    with torch.no_grad():
        assert torch.allclose(trimmed(**probe).logits, with_tuned, atol=1e-4)
