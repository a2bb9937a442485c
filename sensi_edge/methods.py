"""The pruning methods compress can run, each described by what it needs and does.

The pipeline asks a ``Method`` questions (does planning read the dense model's weights? is the trimmed
model fine-tuned, or are its masks tuned without training? do the sensitivity method's floors and
allocation apply? must the dense model be fine-tuned first?) instead of comparing method names, so a new
method is one entry here and one planning function, with no branch to add in the stages.

The sensitivity method is the product (Sensi-BERT: ``planner.build_plan``); the others are comparison
methods under the same budget accounting (``baselines.py``; Kwon et al. 2022 in ``kwon.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .artifacts import TrimPlan
from .errors import SensiEdgeError
from .planner import NO_FLOORS, Budget, Floors


@dataclass(frozen=True)
class PlanInputs:
    """Everything a method may plan from; each method reads what it declares it needs."""

    report: object  # SensitivityReport: group scores and per-unit (Fisher) importance of the analysed model
    budget: Budget
    seed: int = 0
    floors: Floors = NO_FLOORS  # per-layer minimums (sensitivity method only)
    allocation: str = "calibrated"  # how group scores become keep ratios (sensitivity method only)
    model: object = None  # the analysed (dense) model, for methods with ``reads_weights``
    calib: list | None = None  # calibration batches, for methods with ``reads_calibration``


@dataclass(frozen=True)
class Method:
    """A pruning method: how it plans, and what the stages around the plan must do for it."""

    name: str
    summary: str  # one line for --help and the docs
    plan: Callable[[PlanInputs], TrimPlan]
    reads_weights: bool = False  # planning needs the analysed model loaded (magnitude, Kwon)
    reads_calibration: bool = False  # planning needs the calibration batches (Kwon's Fisher blocks)
    retrains: bool = True  # the trimmed model is fine-tuned with the plan's masks; False: ``tune`` instead
    needs_dense_fine_tune: bool = False  # plans on the fine-tuned dense model: --no-baseline is refused
    own_allocation: bool = False  # --floor-heads/--floor-ffn and --allocation apply
    tune: Callable | None = None  # (model, plan, calib) -> info: a retraining-free method's post-plan step


def _sensitivity(x: PlanInputs) -> TrimPlan:
    from .planner import build_plan

    return build_plan(x.report, x.budget, floors=x.floors, allocation=x.allocation)


def _uniform(x: PlanInputs) -> TrimPlan:
    from .baselines import uniform

    return uniform(x.report.geometry, x.report.head_importance, x.report.neuron_importance, x.budget)


def _truncate(x: PlanInputs) -> TrimPlan:
    from .baselines import truncate

    return truncate(x.report.geometry, x.report.head_importance, x.report.neuron_importance, x.budget)


def _magnitude(x: PlanInputs) -> TrimPlan:
    from .baselines import global_selection, magnitude_scores

    return global_selection(x.report.geometry, *magnitude_scores(x.model), x.budget, "magnitude")


def _random(x: PlanInputs) -> TrimPlan:
    import numpy as np

    from .baselines import global_selection

    g, rng = x.report.geometry, np.random.default_rng(x.seed)
    return global_selection(g, [rng.random(h) for h in g.heads], [rng.random(f) for f in g.ffn], x.budget, "random",
                            per_cost=False)


def _kwon_plan(x: PlanInputs) -> TrimPlan:
    from .kwon import fisher_blocks, search_and_rearrange

    r = x.report
    return search_and_rearrange(r.geometry, r.head_importance, r.neuron_importance, fisher_blocks(x.model, x.calib),
                                x.budget)


def _kwon_tune(model, plan: TrimPlan, calib: list) -> dict:
    """Kwon et al.'s last step: least-squares mask tuning on the calibration rows, folded into the weights."""
    from .kwon import fold, tune_masks

    tuned, tuning_log = tune_masks(model, plan, calib)
    fold(model, tuned)
    return {"steps": 0, "note": "retraining-free (Kwon et al. 2022): mask search, rearrangement, mask tuning",
            "mask_tuning": tuning_log}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sensitivity", "Sensi-BERT: probe each tensor group, allocate by calibrated sensitivity (the product)",
           _sensitivity, own_allocation=True),
    Method("uniform", "one keep ratio for every group; Fisher importance inside a group", _uniform),
    Method("magnitude", "global L1 weight magnitude per unit of cost", _magnitude, reads_weights=True),
    Method("random", "random units, greedy fill ignoring cost", _random),
    Method("fisher-mask", "Kwon et al. 2022 in full: mask search, rearrangement, mask tuning; no fine-tuning",
           _kwon_plan, reads_weights=True, reads_calibration=True, retrains=False, needs_dense_fine_tune=True,
           tune=_kwon_tune),
    Method("truncate", "drop the top layers whole (layer dropping)", _truncate),
)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise SensiEdgeError(f"unknown --method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


def plan_with(name: str, x: PlanInputs) -> TrimPlan:
    """The method's plan, its source tied to the sensitivity report it came from."""
    from dataclasses import replace

    plan = get_method(name).plan(x)
    return replace(plan, source={**plan.source, "sensitivity": x.report.hash()})
