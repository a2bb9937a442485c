"""Sensitivity ranking + budget -> how many heads / neurons each tensor group keeps. Pure.

Sensi-BERT's rule: less sensitive tensor groups are trimmed more. Groups are ranked by their
sensitivity score; the group of rank r (0 = least sensitive) of G gets the keep ratio
``clip(scale * (r + 1) / G, 0, 1)`` and ``scale`` is found by bisection so the encoder meets the
budget. Rank (not the raw score) sets the ratio so one outlier score cannot decide the whole
plan. Rounding to whole heads/neurons is then repaired greedily: drop units from the least
sensitive groups while over budget, add units to the most sensitive ones while they fit.

Guarantee (tested): kept cost <= budget, and budget - kept < the cost of the cheapest unit
that could still be added (so the plan is as close to the budget as whole units allow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .cost import Geometry, encoder_cost, unit_cost
from .errors import SensiEdgeError

GROUP_KINDS = ("attention", "ffn")


@dataclass(frozen=True)
class Budget:
    """A target for the trimmed encoder: a fraction of the dense one, or an absolute count."""

    kind: str  # "params" | "flops"
    value: float
    absolute: bool = False
    seq_len: int = 128

    def __post_init__(self):
        if self.kind not in ("params", "flops"):
            raise SensiEdgeError(f"unknown budget kind {self.kind!r}: use 'params' or 'flops'")
        if self.absolute:
            if not self.value > 0:
                raise SensiEdgeError(f"absolute budget must be > 0, got {self.value}")
        elif not 0 < self.value <= 1:
            raise SensiEdgeError(
                f"budget {self.value} is a fraction and must be in (0, 1]; pass --absolute for a count"
            )
        if self.seq_len <= 0:
            raise SensiEdgeError(f"sequence length for the budget must be > 0, got {self.seq_len}")

    def target(self, dense: Geometry) -> int:
        return int(self.value) if self.absolute else int(math.floor(self.value * encoder_cost(dense, self.kind, self.seq_len)))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "absolute": self.absolute, "seq_len": self.seq_len}


def _sizes(g: Geometry, keep: dict[tuple[int, str], int]) -> Geometry:
    return g.with_sizes(
        [keep[(i, "attention")] for i in range(g.num_layers)], [keep[(i, "ffn")] for i in range(g.num_layers)]
    )


def _totals(g: Geometry) -> dict[tuple[int, str], int]:
    return {**{(i, "attention"): h for i, h in enumerate(g.heads)}, **{(i, "ffn"): f for i, f in enumerate(g.ffn)}}


def allocate(dense: Geometry, scores: dict[tuple[int, str], float], budget: Budget) -> dict[tuple[int, str], int]:
    """Units to keep per (layer, kind) group so the encoder cost meets ``budget``."""
    totals = _totals(dense)
    if set(scores) != set(totals):
        raise SensiEdgeError("sensitivity scores must cover every (layer, attention|ffn) group of the model")
    target = budget.target(dense)
    fixed = encoder_cost(dense.with_sizes([0] * dense.num_layers, [0] * dense.num_layers), budget.kind, budget.seq_len)
    if target < fixed:
        raise SensiEdgeError(
            f"budget {target:,} is below the {fixed:,} {budget.kind} that cannot be trimmed (LayerNorms, biases); raise it"
        )
    order = sorted(totals, key=lambda k: (scores[k], k))  # least sensitive first
    weight = {k: (r + 1) / len(order) for r, k in enumerate(order)}

    def keep_at(scale: float) -> dict[tuple[int, str], int]:
        return {k: int(round(totals[k] * min(1.0, scale * weight[k]))) for k in totals}

    def cost(keep) -> int:
        return encoder_cost(_sizes(dense, keep), budget.kind, budget.seq_len)

    lo, hi = 0.0, float(len(order))  # hi keeps everything
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(keep_at(mid)) <= target else (lo, mid)
    keep = keep_at(lo)
    unit = {k: unit_cost(dense, k[1], budget.kind, budget.seq_len) for k in totals}
    # Repair rounding: trim the least sensitive while over, grow the most sensitive while it fits.
    current = cost(keep)
    for k in order:
        while current > target and keep[k] > 0:
            keep[k] -= 1
            current -= unit[k]
    grew = True
    while grew:
        grew = False
        for k in reversed(order):
            if keep[k] < totals[k] and current + unit[k] <= target:
                keep[k] += 1
                current += unit[k]
                grew = True
    return keep


def top_units(importance, k: int) -> list[int]:
    """Indices of the k most important units, ascending (ties: lower index first)."""
    order = sorted(range(len(importance)), key=lambda u: (-float(importance[u]), u))
    return sorted(order[:k])


def build_plan(report, budget: Budget, source: dict | None = None):
    """SensitivityReport + Budget -> TrimPlan: counts from ``allocate``, units by importance."""
    from .artifacts import TrimPlan

    keep = allocate(report.geometry, report.scores(), budget)

    n = report.geometry.num_layers
    return TrimPlan(
        dense=report.geometry,
        keep_heads=tuple(tuple(top_units(report.head_importance[i], keep[(i, "attention")])) for i in range(n)),
        keep_neurons=tuple(tuple(top_units(report.neuron_importance[i], keep[(i, "ffn")])) for i in range(n)),
        budget=budget.to_dict(),
        source={"sensitivity": report.hash(), "sensitivity_method": report.method, **(source or {})},
    )
