"""Sensitivity + budget -> which heads / neurons each tensor group keeps. Pure arithmetic.

Allocations (``--allocation``):

``calibrated`` (default). Sensi-BERT's principle -- the less a group's trimming hurts, the more of
it goes -- applied per unit of cost. Every unit u of group g (a head, or an FFN neuron) gets the
score ``c_g * I_u / cost_u``: I_u is its Fisher importance (a second-order estimate of the loss
increase of removing it alone), and ``c_g`` calibrates that estimate with the measured probe of its
group: ``c_g = measured loss increase of the probe / Fisher-predicted increase of the same probe``.
So the group probes decide how far each group's Fisher numbers are to be trusted (they catch what
the diagonal Fisher misses: units that only hurt together), while the per-unit cost makes a
head (49k parameters in MiniLM) and a neuron (769) comparable. Units are then kept greedily by
score until the budget is full. ``c_g`` is clipped to [median / 8, median x 8] so one noisy probe
(a loss change below the calibration noise) cannot empty or freeze a group.

``calibrated-unshrunk``: the same without the shrinkage (every probe believed as measured, as before the
standard errors were recorded); kept to reproduce and compare.

``rank`` (the first version of this project): groups ranked by raw score, the group of rank r of G
keeps ``clip(scale * (r + 1) / G, 0, 1)``, ``scale`` bisected to meet the budget. It ignores what a
probe removes and turns near-identical scores into extreme plans; kept for comparison.

Both keep per-layer floors (``Floors``: a share of every layer's heads and neurons is never
removed; the most important units fill it), so no layer collapses to 0 or 1 head.

Guarantee (tested): kept cost <= budget, every floor is met, and budget - kept < the cost of the
cheapest unit that could still be added (the plan is as close to the budget as whole units allow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cost import Geometry, encoder_cost, unit_cost
from .errors import SensiEdgeError

if TYPE_CHECKING:
    from .latency import LatencyModel

BUDGET_KINDS = ("params", "flops", "latency")

GROUP_KINDS = ("attention", "ffn")


@dataclass(frozen=True)
class Budget:
    """A target for the trimmed encoder: a fraction of the dense one, or an absolute count; or (kind
    ``latency``) milliseconds per sequence as predicted by a measured latency profile (``latency``)."""

    kind: str  # "params" | "flops" | "latency"
    value: float
    absolute: bool = False
    seq_len: int = 128
    latency: "LatencyModel | None" = None  # kind "latency" only: what a head / a neuron costs on the target

    def __post_init__(self):
        if self.kind not in BUDGET_KINDS:
            raise SensiEdgeError(f"unknown budget kind {self.kind!r}: use {', '.join(BUDGET_KINDS)}")
        if not math.isfinite(self.value):
            raise SensiEdgeError(f"budget must be a finite number, got {self.value}")
        if self.kind == "latency":
            if self.latency is None:
                raise SensiEdgeError("--budget-kind latency needs a latency profile; pass --latency-profile "
                                     "PROFILE.json (made by `sensi-edge profile` on the target)")
            if not self.value > 0:
                raise SensiEdgeError(f"a latency budget is milliseconds per sequence and must be > 0, got {self.value}")
        elif self.absolute:
            if not self.value > 0:
                raise SensiEdgeError(f"absolute budget must be > 0, got {self.value}")
        elif not 0 < self.value <= 1:
            raise SensiEdgeError(
                f"budget {self.value} is a fraction and must be in (0, 1]; pass --absolute for a count"
            )
        if self.seq_len <= 0:
            raise SensiEdgeError(f"sequence length for the budget must be > 0, got {self.seq_len}")

    def cost(self, g: Geometry) -> int:
        """The encoder's cost in this budget's unit (parameters, FLOPs, or picoseconds of predicted latency)."""
        if self.kind == "latency":
            return self.latency.cost_ps(g)
        return encoder_cost(g, self.kind, self.seq_len)

    def unit(self, g: Geometry, kind: str) -> int:
        """Cost of one head ("attention") or one FFN neuron ("ffn")."""
        if self.kind == "latency":
            return self.latency.unit_ps(kind)
        return unit_cost(g, kind, self.kind, self.seq_len)

    def target(self, dense: Geometry) -> int:
        if self.kind == "latency":
            return int(math.floor(self.value * 1e9))  # ms -> ps
        return int(self.value) if self.absolute else int(math.floor(self.value * self.cost(dense)))

    def with_target(self, units: int) -> "Budget":
        """The same kind of budget with ``target() == units``."""
        from dataclasses import replace

        if self.kind == "latency":
            return replace(self, value=units / 1e9)
        return replace(self, value=units, absolute=True)

    def describe(self, units: int) -> str:
        return f"{units / 1e9:.3f} ms" if self.kind == "latency" else f"{units:,} {self.kind}"

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "value": self.value, "absolute": self.absolute, "seq_len": self.seq_len}
        if self.latency is not None:
            d["latency_model"] = self.latency.to_dict()
        return d


@dataclass(frozen=True)
class Floors:
    """Per-layer minimum shares of heads and FFN neurons that a plan keeps (rounded up to whole units).

    Why: without them, noisy scores empty layers (0 heads in both SQuAD seeds at 0.3 under the
    rank rule) and a layer with 1 head has one attention pattern left. QA needs more (span
    extraction reads token-to-token attention); see ``for_task``.
    """

    heads: float = 0.15
    ffn: float = 0.1

    def __post_init__(self):
        for name, v in (("--floor-heads", self.heads), ("--floor-ffn", self.ffn)):
            if not 0 <= v <= 1:
                raise SensiEdgeError(f"{name} must be in [0, 1], got {v}")

    @classmethod
    def for_task(cls, kind: str, heads: float | None = None, ffn: float | None = None) -> "Floors":
        default = cls(0.3, 0.2) if kind == "qa" else cls()
        return cls(default.heads if heads is None else heads, default.ffn if ffn is None else ffn)

    def counts(self, dense: Geometry) -> dict[tuple[int, str], int]:
        return {**{(i, "attention"): min(h, math.ceil(self.heads * h - 1e-9)) for i, h in enumerate(dense.heads)},
                **{(i, "ffn"): min(f, math.ceil(self.ffn * f - 1e-9)) for i, f in enumerate(dense.ffn)}}

    def to_dict(self) -> dict:
        return {"heads": self.heads, "ffn": self.ffn}


NO_FLOORS = Floors(0.0, 0.0)


def _sizes(g: Geometry, keep: dict[tuple[int, str], int]) -> Geometry:
    return g.with_sizes(
        [keep[(i, "attention")] for i in range(g.num_layers)], [keep[(i, "ffn")] for i in range(g.num_layers)]
    )


def _totals(g: Geometry) -> dict[tuple[int, str], int]:
    return {**{(i, "attention"): h for i, h in enumerate(g.heads)}, **{(i, "ffn"): f for i, f in enumerate(g.ffn)}}


def check_budget(dense: Geometry, budget: Budget, floors: Floors) -> dict[tuple[int, str], int]:
    """The floor counts per group, after checking that the budget covers the untrimmable part and the floors."""
    target = budget.target(dense)
    fixed = budget.cost(dense.with_sizes([0] * dense.num_layers, [0] * dense.num_layers))
    if target < fixed:
        raise SensiEdgeError(
            f"budget {budget.describe(target)} is below the {budget.describe(fixed)} that cannot be trimmed "
            f"({'embeddings, LayerNorms, head, fixed overhead' if budget.kind == 'latency' else 'LayerNorms, biases'}); "
            "raise it"
        )
    floor = floors.counts(dense)
    need = budget.cost(_sizes(dense, floor))
    if need > target:
        raise SensiEdgeError(f"the per-layer floors ({floors.heads:g} of the heads, {floors.ffn:g} of the FFN neurons) "
                             f"alone cost {budget.describe(need)}, above the budget {budget.describe(target)}; lower --floor-heads / "
                             "--floor-ffn or raise the budget")
    return floor


def allocate(dense: Geometry, scores: dict[tuple[int, str], float], budget: Budget,
             floors: Floors = NO_FLOORS) -> dict[tuple[int, str], int]:
    """The ``rank`` allocation: units to keep per (layer, kind) group so the encoder cost meets ``budget``."""
    totals = _totals(dense)
    if set(scores) != set(totals):
        raise SensiEdgeError("sensitivity scores must cover every (layer, attention|ffn) group of the model")
    target = budget.target(dense)
    floor = check_budget(dense, budget, floors)
    order = sorted(totals, key=lambda k: (scores[k], k))  # least sensitive first
    weight = {k: (r + 1) / len(order) for r, k in enumerate(order)}

    def keep_at(scale: float) -> dict[tuple[int, str], int]:
        return {k: max(floor[k], int(round(totals[k] * min(1.0, scale * weight[k])))) for k in totals}

    def cost(keep) -> int:
        return budget.cost(_sizes(dense, keep))

    lo, hi = 0.0, float(len(order))  # hi keeps everything
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(keep_at(mid)) <= target else (lo, mid)
    keep = keep_at(lo)
    unit = {k: budget.unit(dense, k[1]) for k in totals}
    # Repair rounding: trim the least sensitive while over, grow the most sensitive while it fits.
    current = cost(keep)
    for k in order:
        while current > target and keep[k] > floor[k]:
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


def select_units(dense: Geometry, head_scores, neuron_scores, budget: Budget, per_cost: bool = True,
                 floors: Floors = NO_FLOORS) -> tuple[list[list[int]], list[list[int]]]:
    """Global greedy fill: every layer's floor (its best-scored units) first, then units by score per unit
    of cost (by score alone when ``per_cost`` is False) while they fit -- the knapsack heuristic of
    Kwon et al. 2022's mask search. Returns kept head / neuron indices per layer (ascending)."""
    target = budget.target(dense)
    floor = check_budget(dense, budget, floors)
    h_cost = budget.unit(dense, "attention")
    n_cost = budget.unit(dense, "ffn")
    hd, nd = (h_cost, n_cost) if per_cost else (1, 1)
    keep_h = [top_units(s, floor[(i, "attention")]) for i, s in enumerate(head_scores)]
    keep_n = [top_units(s, floor[(i, "ffn")]) for i, s in enumerate(neuron_scores)]
    spent = budget.cost(dense.with_sizes([len(k) for k in keep_h], [len(k) for k in keep_n]))
    floor_h, floor_n = [set(k) for k in keep_h], [set(k) for k in keep_n]
    units = [(float(s) / hd, h_cost, "h", layer, u) for layer, ss in enumerate(head_scores) for u, s in enumerate(ss)
             if u not in floor_h[layer]]
    units += [(float(s) / nd, n_cost, "n", layer, u) for layer, ss in enumerate(neuron_scores) for u, s in enumerate(ss)
              if u not in floor_n[layer]]
    units.sort(key=lambda t: (-t[0], t[2], t[3], t[4]))
    for _, cost, kind, layer, u in units:
        if spent + cost <= target:
            (keep_h if kind == "h" else keep_n)[layer].append(u)
            spent += cost
    return [sorted(k) for k in keep_h], [sorted(k) for k in keep_n]


CALIBRATION_CLIP = 8.0  # c_g is kept within [median / 8, median x 8]


def probe_removed(importance, density: float) -> list[int]:
    """The units a probe at ``density`` removes from a group: all but its ceil(density * n) most important."""
    kept = set(top_units(importance, int(math.ceil(density * len(importance)))))
    return [u for u in range(len(importance)) if u not in kept]


def fisher_predicted(report) -> dict[tuple[int, str], float]:
    """Per group, the Fisher-predicted loss increase of its probe: the summed importance of the units it removes."""
    imp = {"attention": report.head_importance, "ffn": report.neuron_importance}
    return {(g.layer, g.kind): float(sum(imp[g.kind][g.layer][u] for u in
                                         probe_removed(imp[g.kind][g.layer], report.probe_density)))
            for g in report.groups}


def calibration(report, shrink: bool = True) -> dict[tuple[int, str], float]:
    """c_g = measured probe loss increase / Fisher-predicted increase of the same probe, clipped around the median,
    then shrunk towards the median as far as the probe's change is noise (``evidence``).

    A group whose probe removed nothing (empty, or density 1) or whose Fisher prediction is 0 gets the
    median. A probe that measured a decrease gets the lower clip -- if the decrease is well outside its noise;
    a change within the noise of the calibration batches says nothing about the group and leaves it at the
    median (without this, on a fine-tuned MiniLM half the groups, whose probes moved the loss by
    +-0.005, were pinned to the lower clip and squeezed to their floors by noise).
    """
    return calibrate({(g.layer, g.kind): g.score for g in report.groups},
                     {(g.layer, g.kind): g.score_se for g in report.groups}, fisher_predicted(report), shrink)


def calibrate(scores: dict, ses: dict, predicted: dict, shrink: bool = True) -> dict:
    """``calibration`` on plain per-group numbers (measured probe score, its standard error or None, the
    Fisher-predicted score of the same probe), so a committed report's JSON can be re-calibrated as the planner did."""
    raw = {k: scores[k] / predicted[k] for k in scores if predicted[k] > 0}
    positive = sorted(v for v in raw.values() if v > 0)
    if not positive:  # no probe measured any loss: trust the Fisher numbers as they are
        return {k: 1.0 for k in scores}
    med = positive[len(positive) // 2] if len(positive) % 2 else 0.5 * (positive[len(positive) // 2 - 1] + positive[len(positive) // 2])
    lo, hi = med / CALIBRATION_CLIP, med * CALIBRATION_CLIP
    out = {}
    for k in scores:
        c = min(hi, max(lo, raw.get(k, med)))
        w = evidence(scores[k], ses.get(k)) if shrink else 1.0
        out[k] = w * c + (1.0 - w) * med
    return out


def evidence(score: float, se: float | None) -> float:
    """How far a probe's measured loss change is to be believed over the groups' common calibration:
    z^2 / (1 + z^2) with z = score / its standard error over the calibration batches (a shrinkage weight:
    0 for a change at the noise level, -> 1 for a change many standard errors away from 0). Probes
    measured before the standard error was recorded (``se`` None) count in full, as they did then."""
    if se is None:
        return 1.0
    if se == 0:
        return 1.0 if score != 0 else 0.0
    z2 = (score / se) ** 2
    return z2 / (1.0 + z2)


ALLOCATIONS = ("calibrated", "calibrated-unshrunk", "rank")


def build_plan(report, budget: Budget, source: dict | None = None, floors: Floors = NO_FLOORS,
               allocation: str = "calibrated"):
    """SensitivityReport + Budget -> TrimPlan (see the module docstring for the two allocations)."""
    from .artifacts import TrimPlan

    n = report.geometry.num_layers
    if allocation in ("calibrated", "calibrated-unshrunk"):
        c = calibration(report, shrink=allocation == "calibrated")
        head_scores = [[c[(i, "attention")] * x for x in report.head_importance[i]] for i in range(n)]
        neuron_scores = [[c[(i, "ffn")] * x for x in report.neuron_importance[i]] for i in range(n)]
        keep_heads, keep_neurons = select_units(report.geometry, head_scores, neuron_scores, budget, floors=floors)
        extra = {"calibration": {f"L{i}.{k}": v for (i, k), v in sorted(c.items())}}
    elif allocation == "rank":
        keep = allocate(report.geometry, report.scores(), budget, floors)
        keep_heads = [top_units(report.head_importance[i], keep[(i, "attention")]) for i in range(n)]
        keep_neurons = [top_units(report.neuron_importance[i], keep[(i, "ffn")]) for i in range(n)]
        extra = {}
    else:
        raise SensiEdgeError(f"unknown --allocation {allocation!r}: use one of {', '.join(ALLOCATIONS)}")
    return TrimPlan(
        dense=report.geometry,
        keep_heads=tuple(tuple(k) for k in keep_heads),
        keep_neurons=tuple(tuple(k) for k in keep_neurons),
        budget=budget.to_dict(),
        source={"sensitivity": report.hash(), "sensitivity_method": report.method, "allocation": allocation,
                "floors": floors.to_dict(), **extra, **(source or {})},
    )
