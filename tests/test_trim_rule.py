"""The deep-trim rule (sensi_edge/trim_rule.py) at its edges: which runs get twice the trimmed steps at twice
the learning rate, and which keep the recipe or the user's flags. Pure: no model, no training."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sensi_edge.compress import CompressConfig
from sensi_edge.cost import Geometry, encoder_params
from sensi_edge.recipe import Recipe
from sensi_edge.trim_rule import KEEP_BELOW, STEPS_BELOW, choose

MINILM = Geometry(hidden=384, head_dim=32, heads=(12,) * 6, ffn=(1536,) * 6)


@dataclass
class _Plan:
    dense: Geometry
    trimmed: Geometry


def _plans() -> tuple[_Plan, _Plan]:
    """Two plans one FFN neuron per layer apart: just under and at KEEP_BELOW of the encoder."""
    for f in range(1, 1537):
        g = MINILM.with_sizes((4,) * 6, (f,) * 6)
        if encoder_params(g) / encoder_params(MINILM) >= KEEP_BELOW:
            return _Plan(MINILM, MINILM.with_sizes((4,) * 6, (f - 1,) * 6)), _Plan(MINILM, g)
    raise AssertionError("no plan reaches KEEP_BELOW")


def _cfg(**kw) -> CompressConfig:
    return CompressConfig(task="sst2", data="d", output=Path("o"), recipe=Recipe(epochs=2.0, learning_rate=5e-5), **kw)


def test_the_rule_fires_just_under_both_thresholds_and_not_at_them():
    under, at = _plans()
    assert encoder_params(under.trimmed) / encoder_params(MINILM) < KEEP_BELOW
    deep = choose(_cfg(), under, STEPS_BELOW - 1, "classification")
    assert deep.rule == "deep-trim"
    assert (deep.recipe.epochs, deep.recipe.learning_rate) == (4.0, 1e-4)
    assert deep.recipe.batch_size == 32 and deep.recipe.seed == 42  # only the two fields change
    for plan, steps in ((at, STEPS_BELOW - 1), (under, STEPS_BELOW)):
        kept = choose(_cfg(), plan, steps, "classification")
        assert kept.rule == "recipe" and kept.recipe == _cfg().recipe


@pytest.mark.parametrize("kw, kind, rule", [
    ({"deep_trim": False}, "classification", "recipe"),
    ({"distill": True}, "classification", "recipe"),
    ({"baseline": False}, "classification", "recipe"),
    ({}, "qa", "recipe"),
    ({"trim_learning_rate": 2e-5}, "classification", "flags"),
    ({"trim_epochs": 3.0}, "classification", "flags"),
    ({"accurate": True}, "classification", "flags"),
])
def test_a_deep_short_run_keeps_the_recipe_or_the_flags_when_the_rule_does_not_apply(kw, kind, rule):
    under, _ = _plans()
    cfg = _cfg(**kw)
    got = choose(cfg, under, 100, kind)
    assert got.rule == rule and got.recipe == cfg.trim_recipe
    if rule == "flags":
        assert got.recipe != cfg.recipe  # the user's own trimmed recipe, not doubled and not the dense one
    if kw == {"accurate": True}:
        assert (got.recipe.epochs, got.recipe.learning_rate) == (4.0, 5e-5) and "--accurate" in got.why


def test_the_rule_never_doubles_a_learning_rate_out_of_its_range():
    """A recipe may train at any rate in (0, 1); twice 0.5 would be 1, which the recipe itself refuses."""
    under, _ = _plans()
    high = CompressConfig(task="sst2", data="d", output=Path("o"), recipe=Recipe(epochs=2.0, learning_rate=0.5))
    kept = choose(high, under, STEPS_BELOW - 1, "classification")
    assert kept.rule == "recipe" and kept.recipe == high.recipe and "stands aside" in kept.why
    just = CompressConfig(task="sst2", data="d", output=Path("o"), recipe=Recipe(epochs=2.0, learning_rate=0.49))
    deep = choose(just, under, STEPS_BELOW - 1, "classification")
    assert deep.rule == "deep-trim" and deep.recipe.learning_rate == pytest.approx(0.98)
    deep.recipe.check()
