"""Sensi-BERT sensitivity analysis: how much does trimming one tensor group alone hurt?

For every group (the heads of one layer's Q/K/V/O, or the neurons of one layer's FFN; see
``arch/bert.py``) the group alone is trimmed to ``probe_density`` -- keeping its most important
units -- while everything else stays dense, and the calibration loss is measured. The loss
increase is the group's sensitivity score. ``method="fisher"`` skips the probes and estimates the
same increase from the Fisher information of the units the probe would remove (one backward
pass instead of one forward pass per group; cheaper, less faithful).

Unit importance inside a group is the empirical Fisher information of a per-unit mask
(sum over calibration batches of (dL/dmask)^2, as in Michel et al. 2019 / Kwon et al. 2022).

Under torchrun / accelerate launch, every statistic here is a sum over calibration batches, so the
batches are dealt round-robin to the ranks and the sums added up (``distributed.all_sum``): N processes
each run 1/N of the passes and all end with the scores one process would compute (tested).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import distributed
from .arch import adapter_for
from .artifacts import GroupSensitivity, SensitivityReport
from .masking import MaskSet, attach
from .planner import GROUP_KINDS, top_units
from .progress import track


def _to(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def mask_gradients(model, calib: list[dict], desc: str = "unit importance"):
    """Per calibration batch, the gradient of the batch loss w.r.t. every layer's head and neuron masks:
    a list [heads of layer 0, ..., neurons of layer 0, ...] of float64 arrays (empty groups: zeros).
    Unit importance sums their squares; Kwon's rearrangement (kwon.fisher_blocks) their outer products."""
    geometry = adapter_for(model).geometry(model)
    masks = MaskSet.ones(geometry, requires_grad=True)
    device = next(model.parameters()).device
    model.eval()  # no dropout: importance of the model as it will be evaluated
    with attach(model, masks):
        for batch in track(calib, desc):
            loss = model(**_to(batch, device)).loss
            grads = torch.autograd.grad(loss, masks.heads + masks.neurons, allow_unused=True)
            yield [np.zeros(m.shape[0]) if g is None else g.detach().double().cpu().numpy()
                   for m, g in zip(masks.heads + masks.neurons, grads)]


def unit_importance(model, calib: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-head and per-neuron Fisher importance on the calibration batches."""
    geometry = adapter_for(model).geometry(model)
    acc = [np.zeros(h) for h in geometry.heads] + [np.zeros(f) for f in geometry.ffn]
    for grads in mask_gradients(model, calib):
        for a, g in zip(acc, grads):
            a += g ** 2
    return acc[:geometry.num_layers], acc[geometry.num_layers:]


@torch.no_grad()
def calibration_loss(model, calib: list[dict], masks: MaskSet | None = None) -> tuple[float, float]:
    """(mean loss, accuracy in %) over the calibration batches, optionally with masks attached."""
    device = next(model.parameters()).device
    model.eval()
    tally = _Tally()
    handle = attach(model, masks) if masks is not None else None
    try:
        for batch in calib:
            tally.add(model(**_to(batch, device)), batch)
    finally:
        if handle:
            handle.remove()
    return tally.result()


def _correct(out, batch) -> int:
    """Rows predicted right: the label, or (QA) both the start and the end position."""
    if "labels" in batch:
        return int((out.logits.argmax(-1).cpu() == batch["labels"]).sum())
    hit = (out.start_logits.argmax(-1).cpu() == batch["start_positions"]) & (out.end_logits.argmax(-1).cpu() == batch["end_positions"])
    return int(hit.sum())


class _Tally:
    """Row-weighted loss sum, rows predicted right and rows seen, over calibration batches."""

    def __init__(self):
        self.total, self.correct, self.rows = 0.0, 0, 0

    def add(self, out, batch) -> None:
        n = batch["input_ids"].shape[0]
        self.total += float(out.loss) * n
        self.correct += _correct(out, batch)
        self.rows += n

    def result(self) -> tuple[float, float]:
        return self.total / self.rows, 100.0 * self.correct / self.rows

    def as_array(self) -> np.ndarray:
        return np.array([self.total, self.correct, self.rows], dtype=np.float64)

    @classmethod
    def of(cls, sums) -> "_Tally":
        t = cls()
        t.total, t.correct, t.rows = float(sums[0]), int(round(sums[1])), int(round(sums[2]))
        return t


@torch.no_grad()
def probe_losses(model, calib: list[dict], probes: list[tuple[list, list]], first_layers: list[int],
                 desc: str = "sensitivity (probe)") -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """Dense (loss, accuracy) and, for every probe (keep_heads, keep_neurons), the masked (loss, accuracy).

    A probe that only changes layers ``first_layers[p]`` onwards starts from the hidden states the
    dense pass of the same batch fed into that layer, so it runs only the layers it can change (a
    probe of the last of 6 layers costs 1/6 of a forward pass; 42% fewer layer passes over a 6-layer
    analysis). Batches are the outer loop so that only one batch's layer inputs are held at a time.
    The result equals ``calibration_loss(model, calib, masks)`` per probe (tested)."""
    dense, tallies = _probe_tallies(model, calib, probes, first_layers, desc)
    return dense.result(), [t.result() for t in tallies]


@torch.no_grad()
def _probe_tallies(model, calib, probes, first_layers, desc, paired: np.ndarray | None = None) -> tuple[_Tally, list[_Tally]]:
    """Dense and per-probe tallies; ``paired`` (probes x 3), when given, gathers per probe the sum, the sum of
    squares and the count of its per-batch loss change (probe loss - dense loss of the same batch)."""
    adapter = adapter_for(model)
    device = next(model.parameters()).device
    model.eval()
    masks = MaskSet.ones(adapter.geometry(model))
    dense, tallies = _Tally(), [_Tally() for _ in probes]
    with attach(model, masks):
        for batch in track(calib, desc):
            on_device = _to(batch, device)
            masks.set_keep(*_all_units(masks))
            with adapter.capture_layer_inputs(model) as inputs:
                out = model(**on_device)
                dense.add(out, batch)
                dense_loss = float(out.loss)
            for p, ((heads, neurons), start, tally) in enumerate(zip(probes, first_layers, tallies)):
                masks.set_keep(heads, neurons)
                with adapter.start_at_layer(model, start, inputs[start]):
                    out = model(**on_device)
                    tally.add(out, batch)
                if paired is not None:
                    d = float(out.loss) - dense_loss
                    paired[p] += (d, d * d, 1.0)
    return dense, tallies


def standard_error(sums: np.ndarray) -> float:
    """Standard error of a mean from (sum, sum of squares, count); inf when fewer than 2 batches."""
    total, squares, n = (float(x) for x in sums)
    if n < 2:
        return math.inf
    var = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(var / n)


def _all_units(masks: MaskSet) -> tuple[list, list]:
    return [range(len(m)) for m in masks.heads], [range(len(m)) for m in masks.neurons]


def _top(importance: np.ndarray, density: float) -> list[int]:
    return top_units(importance, int(math.ceil(density * len(importance))))


def analyse(model, calib: list[dict], probe_density: float = 0.5, method: str = "probe") -> SensitivityReport:
    if method not in ("probe", "fisher"):
        raise ValueError(f"unknown sensitivity method {method!r}")
    start = time.perf_counter()
    geometry = adapter_for(model).geometry(model)
    w = distributed.world()
    shard = calib[w.rank::w.size]  # this rank's batches; every sum below is completed by all_sum
    head_imp, neuron_imp = unit_importance(model, shard)
    flat = distributed.all_sum(np.concatenate(head_imp + neuron_imp))
    cuts = np.cumsum([len(a) for a in head_imp + neuron_imp])[:-1]
    parts = np.split(flat, cuts)
    head_imp, neuron_imp = parts[:geometry.num_layers], parts[geometry.num_layers:]
    all_heads = [list(range(h)) for h in geometry.heads]
    all_neurons = [list(range(f)) for f in geometry.ffn]
    probes, where = [], {}  # (layer, kind) -> index into probes, for groups that have units
    for layer in range(geometry.num_layers):
        for kind in GROUP_KINDS:
            imp = (head_imp if kind == "attention" else neuron_imp)[layer]
            if len(imp) == 0 or method == "fisher":
                continue
            kept = _top(imp, probe_density)
            heads = [kept if (i == layer and kind == "attention") else h for i, h in enumerate(all_heads)]
            neurons = [kept if (i == layer and kind == "ffn") else n for i, n in enumerate(all_neurons)]
            where[(layer, kind)] = len(probes)
            probes.append((heads, neurons))
    layers_of = [layer for (layer, _kind) in where]
    paired = np.zeros((len(probes), 3))
    dense_t, probe_t = _probe_tallies(model, shard, probes, layers_of, f"sensitivity ({method})", paired)
    paired = distributed.all_sum(paired) if probes else paired
    sums = distributed.all_sum(np.stack([dense_t.as_array()] + [t.as_array() for t in probe_t]))
    (dense_loss, dense_metric), measured = _Tally.of(sums[0]).result(), [_Tally.of(x).result() for x in sums[1:]]
    groups = []
    for layer in range(geometry.num_layers):
        for kind in GROUP_KINDS:
            imp = (head_imp if kind == "attention" else neuron_imp)[layer]
            if len(imp) == 0:  # an already-empty group cannot be trimmed further
                groups.append(GroupSensitivity(layer, kind, 0.0, dense_loss, dense_metric))
            elif method == "fisher":
                removed = sorted(set(range(len(imp))) - set(_top(imp, probe_density)))
                groups.append(GroupSensitivity(layer, kind, float(imp[removed].sum()) / (2 * len(calib))))
            else:
                loss, metric = measured[where[(layer, kind)]]
                se = standard_error(paired[where[(layer, kind)]])
                groups.append(GroupSensitivity(layer, kind, loss - dense_loss, loss, metric, se))
    return SensitivityReport(
        method=method,
        probe_density=probe_density,
        geometry=geometry,
        dense_loss=dense_loss,
        dense_metric=dense_metric,
        groups=tuple(groups),
        head_importance=tuple(tuple(float(x) for x in a) for a in head_imp),
        neuron_importance=tuple(tuple(float(x) for x in a) for a in neuron_imp),
        calibration_rows=sum(int(b["input_ids"].shape[0]) for b in calib),
        seconds=time.perf_counter() - start,
    )


def plot_heatmap(report: SensitivityReport, path) -> None:
    """Layers x {attention, ffn} heatmap of the sensitivity scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = report.geometry.num_layers
    grid = np.zeros((n, len(GROUP_KINDS)))
    for g in report.groups:
        grid[g.layer, GROUP_KINDS.index(g.kind)] = g.score
    fig, ax = plt.subplots(figsize=(4, 0.45 * n + 1.5))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(GROUP_KINDS)), ["attention heads\n(Q/K/V/O)", "FFN neurons\n(inter./output)"])
    ax.set_yticks(range(n), [f"layer {i}" for i in range(n)])
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.3g}", ha="center", va="center", color="w" if v < grid.max() * 0.6 else "k", fontsize=8)
    ax.set_title(f"sensitivity ({report.method}, probe density {report.probe_density})", fontsize=9)
    fig.colorbar(im, ax=ax, label="calibration loss increase")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
