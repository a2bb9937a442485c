"""Which recipe the trimmed fine-tune runs: the user's flags, or the deep-trim rule, or the dense recipe.

A model cut to under 40% of its encoder has more to recover than the dense model had to learn; when the dense
recipe is also short, the recipe's steps are not enough to recover it. Measured (benchmarks/results/
accuracy_at_budget.md, MiniLM, budget 0.3, 3 seeds each, teacher-free): twice the trimmed steps at twice the
learning rate gained +1.17 points on rt-polarity (250 recipe steps; 3 of 3 seeds), +0.67 on trec (309 steps;
2 of 3) and lost 0.82 on qnli-squad (750 steps; 0 of 3). So the rule fires when the plan keeps < 40% of the
encoder's parameters AND the recipe runs < 500 steps. Both thresholds sit between those three points (and the
0.5 budgets, where the recipe's steps already met the targets), not on a curve fitted to many: the report names
the rule whenever it fires, and ``--no-deep-trim`` keeps the recipe's trimmed fine-tune.

The rule stays out of the way of an explicit choice: ``--trim-epochs`` / ``--trim-learning-rate`` (and
``--accurate``, which sets ``--trim-epochs``) win; a distilled trim (``--distill``) and the one-fine-tune mode
(``--no-baseline``) keep the recipe, because the lever was measured on neither; so does question answering (all
three measurements are classification; SQuAD's 418-step recipe would otherwise qualify). It is decided in the trim
stage, after the plan (the kept share is the plan's, whatever the budget's kind), and recorded in trim.json, which
the report reads: the report states what ran, not a second evaluation of the rule.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .cost import encoder_params
from .recipe import Recipe

KEEP_BELOW = 0.4  # share of the dense encoder's parameters the plan keeps
STEPS_BELOW = 500  # optimizer steps of one pass of the dense recipe


@dataclass(frozen=True)
class TrimRecipeChoice:
    recipe: Recipe
    rule: str  # "deep-trim" | "flags" (--trim-* / --accurate) | "recipe" (the dense recipe, as is)
    why: str  # one line for the log and the report

    def to_dict(self) -> dict:
        """What trim.json records (the report copies it)."""
        return {"trim_recipe": self.recipe.to_dict(), "trim_rule": {"rule": self.rule, "why": self.why}}


def choose(cfg, plan, recipe_steps: int, task_kind: str) -> TrimRecipeChoice:
    """The trimmed fine-tune's recipe for this run (``cfg``: a CompressConfig; ``plan``: its TrimPlan;
    ``task_kind``: the task's kind, "classification" or "qa")."""
    if cfg.trim_epochs is not None or cfg.trim_learning_rate is not None:
        return TrimRecipeChoice(cfg.trim_recipe, "flags", "--trim-epochs / --trim-learning-rate"
                                + (" (from --accurate)" if cfg.accurate else ""))
    kept = encoder_params(plan.trimmed) / encoder_params(plan.dense)
    facts = f"plan keeps {kept:.1%} of the encoder, recipe {recipe_steps} steps"
    if not cfg.deep_trim:
        return TrimRecipeChoice(cfg.trim_recipe, "recipe", f"--no-deep-trim ({facts})")
    if cfg.distill or not cfg.baseline or task_kind == "qa":
        return TrimRecipeChoice(cfg.trim_recipe, "recipe", f"{facts}; the deep-trim rule applies only to a "
                                "teacher-free trim from the fine-tuned dense model, on classification")
    if kept < KEEP_BELOW and recipe_steps < STEPS_BELOW:
        r = cfg.recipe
        if 2 * r.learning_rate >= 1:  # the recipe allows rates in (0, 1); doubling must not leave that range
            return TrimRecipeChoice(cfg.trim_recipe, "recipe", f"{facts}; twice the learning rate "
                                    f"({2 * r.learning_rate:g}) would be >= 1, so the deep-trim rule stands aside")
        return TrimRecipeChoice(replace(r, epochs=2 * r.epochs, learning_rate=2 * r.learning_rate), "deep-trim",
                                f"{facts} (< {KEEP_BELOW:.0%} and < {STEPS_BELOW}): twice the epochs at twice the "
                                "learning rate (--no-deep-trim: the recipe's)")
    return TrimRecipeChoice(cfg.trim_recipe, "recipe", facts)
