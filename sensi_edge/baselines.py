"""Comparison methods that produce a TrimPlan under the same budget accounting as Sensi-BERT
(``methods.py`` names them and says what each needs).

Each is pure arithmetic over a Geometry and per-unit scores, so the benchmark sweep runs them
through the very same fine-tuning, removal and export as the sensitivity method:

- ``uniform``: one keep ratio for every group (heads and neurons alike); inside a group the
  units with the highest importance stay (the same Fisher importance Sensi-BERT uses).
- ``global``: units from all groups compete on score per unit of cost; the best-per-cost units
  are kept until the budget is full. With L1 weight norms as scores this is global magnitude
  pruning.
- ``fisher-mask``: Kwon et al. 2022's retraining-free pipeline in full (``kwon.py``: mask search,
  rearrangement under the per-layer Fisher matrix, least-squares mask tuning), no fine-tuning.
- ``random``: the same greedy fill in a random order that ignores cost, so every head and every
  neuron is kept with about the same probability (random scores divided by cost would have kept
  nearly every cheap FFN neuron and almost no heads: a different, much worse baseline).
- ``truncate``: keep the bottom layers whole and remove the top ones entirely (the usual
  layer-dropping baseline); the last partly kept layer is trimmed uniformly to fill the budget.
"""
from __future__ import annotations

import math

import numpy as np

from .artifacts import TrimPlan
from .cost import Geometry
from .planner import Budget, select_units, top_units


def _plan(dense: Geometry, keep_heads, keep_neurons, budget: Budget, method: str) -> TrimPlan:
    return TrimPlan(dense, tuple(tuple(sorted(int(u) for u in h)) for h in keep_heads),
                    tuple(tuple(sorted(int(u) for u in n)) for n in keep_neurons), budget.to_dict(), {"method": method})


def _top(scores, k: int):
    return top_units(scores, k)


def uniform(dense: Geometry, head_scores, neuron_scores, budget: Budget) -> TrimPlan:
    target = budget.target(dense)

    def counts(r):
        return [int(math.floor(r * h)) for h in dense.heads], [int(math.floor(r * f)) for f in dense.ffn]

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        h, f = counts(mid)
        lo, hi = (mid, hi) if budget.cost(dense.with_sizes(h, f)) <= target else (lo, mid)
    h, f = counts(lo)
    return _plan(dense, [_top(s, k) for s, k in zip(head_scores, h)], [_top(s, k) for s, k in zip(neuron_scores, f)],
                 budget, "uniform")


def global_selection(dense: Geometry, head_scores, neuron_scores, budget: Budget, method: str,
                     per_cost: bool = True) -> TrimPlan:
    """Greedy by score per cost (the standard knapsack heuristic across heads and neurons), or by
    score alone when ``per_cost`` is False. No floors: the peers it stands for have none."""
    keep_h, keep_n = select_units(dense, head_scores, neuron_scores, budget, per_cost=per_cost)
    return _plan(dense, keep_h, keep_n, budget, method)


def truncate(dense: Geometry, head_scores, neuron_scores, budget: Budget) -> TrimPlan:
    target = budget.target(dense)
    keep_h = [[] for _ in dense.heads]
    keep_n = [[] for _ in dense.ffn]
    for layer in range(dense.num_layers):
        full_h = list(range(dense.heads[layer]))
        full_n = list(range(dense.ffn[layer]))
        trial_h, trial_n = [*keep_h[:layer], full_h], [*keep_n[:layer], full_n]
        sizes = dense.with_sizes([len(x) for x in trial_h] + [0] * (dense.num_layers - layer - 1),
                                 [len(x) for x in trial_n] + [0] * (dense.num_layers - layer - 1))
        if budget.cost(sizes) <= target:
            keep_h[layer], keep_n[layer] = full_h, full_n
            continue
        # the first layer that does not fit whole is trimmed uniformly to what is left
        rest_h = dense.with_sizes([len(x) for x in keep_h], [len(x) for x in keep_n])
        partial = uniform(dense.with_sizes([dense.heads[layer]], [dense.ffn[layer]]), [head_scores[layer]],
                          [neuron_scores[layer]],
                          budget.with_target(max(1, target - budget.cost(rest_h) + budget.cost(dense.with_sizes([0], [0])))))
        keep_h[layer], keep_n[layer] = list(partial.keep_heads[0]), list(partial.keep_neurons[0])
        break
    return _plan(dense, keep_h, keep_n, budget, "truncate")


def magnitude_scores(model) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """L1 norm of every head (its Q/K/V rows and O columns) and neuron (its two weight vectors)."""
    from .arch import adapter_for

    adapter = adapter_for(model)
    g = adapter.geometry(model)
    heads, neurons = [], []
    for layer in adapter.layers(model):
        if adapter.head_mask_point(layer) is None:
            heads.append(np.zeros(0))
        else:
            q, k, v, o = (m.weight.detach().abs() for m in adapter.attention_linears(layer))
            rows = (q + k + v).sum(1).reshape(-1, g.head_dim).sum(1)
            cols = o.sum(0).reshape(-1, g.head_dim).sum(1)
            heads.append((rows + cols).cpu().numpy())
        if adapter.ffn_mask_point(layer) is None:
            neurons.append(np.zeros(0))
        else:
            i, out = (m.weight.detach().abs() for m in adapter.ffn_linears(layer))
            neurons.append((i.sum(1) + out.sum(0)).cpu().numpy())
    return heads, neurons
