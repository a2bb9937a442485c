"""The compress pipeline's stages, one function each, in the order they run.

    prepare -> baseline -> warmup (one-fine-tune mode) -> sensitivity -> plan -> trim -> report

Every stage reads what earlier stages wrote into the work folder (``baseline.json``, ``dense_model/``,
``sensitivity.json``, ``plan.json``, ``trim.json``) and is skipped when its own artifact is already there
(``--resume``). The dense-side stages (baseline, warmup, sensitivity) declare their inputs in
``stage_keys.py``: on --resume their artifact must still match the digest of those inputs, and with
``--reuse KEPT`` they are copied from the kept run when its key for the stage equals this run's. Under torchrun / accelerate launch every rank runs
every stage (the fine-tunes are DDP, the sensitivity sums are split over ranks); rank 0 alone writes,
and a barrier follows each stage so all ranks see the same files before the next decides whether to run.
``compress.compress`` owns the folder (checks, lock, publish); this module owns what happens inside it.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import distributed
from .artifacts import DenseBaseline, SensitivityReport, TrimPlan, TrimResult, write_json_atomic
from .errors import SensiEdgeError, first_line
from .stage_keys import ARTIFACTS, StageKeys, inputs_of, of_json

if TYPE_CHECKING:  # annotations only: compress imports this module
    from .compress import CompressConfig, _Timer
    from .planner import Budget
    from .tasks import TaskSpec


@dataclass
class Run:
    """One compress run's settings and the state the stages hand on in memory (data, tokenizer)."""

    cfg: CompressConfig
    resume: bool
    log: Callable[[str], None]
    work: Path
    timer: _Timer
    task: TaskSpec
    budget: Budget
    model_spec: str
    seq_len: int
    world: distributed.World = field(default_factory=distributed.world)
    data: dict = field(default_factory=dict)  # filled by prepare()
    digests: dict = field(default_factory=dict)  # input name -> digest (stage_keys.STAGE_INPUTS), by prepare()

    @property
    def main(self) -> bool:
        return self.world.is_main

    @property
    def analysed_dir(self) -> Path:
        """The model sensitivity is measured on and the trim starts from: the dense fine-tune, or the warm-up."""
        return self.work / ("dense_model" if self.cfg.baseline else "warm_model")

    def todo(self, path: Path) -> bool:
        """Whether a stage still has to run, as rank 0 sees it (every rank then does the same)."""
        distributed.barrier()  # the previous stage's files are all written
        return not distributed.from_main(path.exists())

    def stage(self, key: str, what: str) -> None:
        self.log(f"== {key}: {what}")
        self.timer.start(key)

    def needs(self, stage: str) -> bool:
        """Whether a dense-side stage still has to run: not when its artifact is here under this run's input key
        (--resume), nor when the --reuse run has it under the same key (copied now). Rank 0 decides."""
        distributed.barrier()  # the previous stage's files are all written
        outcome = None
        if self.main:
            try:
                outcome = self._settle(stage)
            except SensiEdgeError as exc:
                outcome = exc
            except Exception as exc:  # a full disk, a torn file: the other ranks must hear it, not wait forever
                outcome = SensiEdgeError(f"cannot settle the {stage} stage in {self.work}: {first_line(exc)}")
        outcome = distributed.from_main(outcome)
        if isinstance(outcome, SensiEdgeError):
            raise outcome
        return outcome

    def _settle(self, stage: str) -> bool:
        inputs = inputs_of(stage, self.digests)
        if (self.work / ARTIFACTS[stage][-1]).exists():
            done = StageKeys.read(self.work)
            if done.key(stage) not in (None, of_json(inputs)):  # None: killed between the artifact and its key
                raise SensiEdgeError(f"the {stage} stage in {self.work} was computed from other "
                                     f"{', '.join(done.differing(stage, inputs))} than this session's (changed since "
                                     "the run started); restore them, or delete that folder and start again")
            return False
        return not (self.cfg.reuse and self._take(stage, inputs))

    def _take(self, stage: str, inputs: dict) -> bool:
        """Copy ``stage``'s artifacts from the --reuse run when its key there is this run's; False if it is not."""
        from .run_report import _json_or_empty

        source, names = Path(self.cfg.reuse), ARTIFACTS[stage]
        if StageKeys.read(source).key(stage) != of_json(inputs) or not (source / names[-1]).exists():
            return False
        for name in names:  # each under a temp name, then renamed; the marker last, so a torn copy is not "done"
            if not (source / name).exists():
                raise SensiEdgeError(f"--reuse {source}: this run needs that run's {name}, which it did not keep; "
                                     "rerun it with --keep-intermediate")
            tmp = self.work / f".{name}.copy"
            shutil.rmtree(tmp, ignore_errors=True)
            (shutil.copytree if (source / name).is_dir() else shutil.copy2)(source / name, tmp)
            shutil.rmtree(self.work / name, ignore_errors=True)  # a copy killed before its marker: done again
            os.replace(tmp, self.work / name)
        self.record(stage)
        ran = {**_json_or_empty(source / "reused_timings.json"), **_json_or_empty(source / "timings.json")}
        if stage in ran:  # what the copied stage cost when it ran: the report still states a whole run's time
            write_json_atomic(self.work / "reused_timings.json",
                              {**_json_or_empty(self.work / "reused_timings.json"), stage: ran[stage]})
        self.log(f"reusing from {source}: {', '.join(names)}")
        return True

    def record(self, stage: str) -> None:
        """Note the input key of a dense-side stage whose artifacts are complete (rank 0)."""
        path = self.work / "stage_keys.json"
        StageKeys.read(self.work).with_stage(stage, inputs_of(stage, self.digests)).save(path)


def run_all(run: Run, train, val) -> dict:
    """Every stage in order; the report on rank 0, {} on the other ranks."""
    import torch

    torch.manual_seed(run.cfg.recipe.seed)
    prepare(run, train, val)
    dense = baseline(run)
    warmup(run)
    sens = sensitivity(run)
    plan = make_plan(run, sens)
    trim_info = trim(run, sens, plan)
    return report(run, sens, plan, dense, trim_info) if run.main else {}


def _subsample(ds, n, seed):
    return ds.shuffle(seed=seed).select(range(min(n, len(ds)))) if n is not None else ds


def prepare(run: Run, train, val) -> None:
    """Rows, features and calibration batches. The calibration rows are held out of training."""
    from transformers import AutoTokenizer

    from .tasks.evaluators import evaluator_for
    from .tasks.tokenise import batches

    cfg = run.cfg
    try:
        tokenizer = AutoTokenizer.from_pretrained(run.model_spec)
    except Exception as exc:
        raise SensiEdgeError(f"cannot load the tokenizer of {run.model_spec!r}: {first_line(exc)}") from exc
    ev = evaluator_for(run.task, tokenizer, run.seq_len, cfg.doc_stride)
    shuffled = train.shuffle(seed=cfg.recipe.seed)
    n_calib = min(cfg.calibration_samples, max(len(shuffled) // 5, 1))
    train_rows = _subsample(shuffled.select(range(n_calib, len(shuffled))), cfg.max_train_samples, cfg.recipe.seed)
    val_rows = _subsample(val, cfg.max_eval_samples, cfg.recipe.seed)
    train_enc = ev.train_features(train_rows)
    calib_enc = ev.train_features(shuffled.select(range(n_calib)))
    # batched by length: far less padding, so the probes (one pass over these rows per group) cost less
    calib_enc = calib_enc.select(sorted(range(len(calib_enc)), key=lambda i: len(calib_enc[i]["input_ids"])))
    recipe_steps = int(round(-(-len(train_enc) // cfg.recipe.batch_size) * cfg.recipe.epochs))
    warm = cfg.effective_warmup_fraction
    run.data = {"tokenizer": tokenizer, "ev": ev, "train_enc": train_enc, "val_prep": ev.prepare(val_rows),
                "calib": batches(calib_enc, tokenizer, cfg.recipe.batch_size), "recipe_steps": recipe_steps,
                "warmup_steps": None if warm is None else max(1, int(round(warm * recipe_steps))),
                "rows": {"train": len(train_rows), "calibration": n_calib, "validation": len(val_rows)}}
    run.log(f"task {run.task.name}: {len(train_rows)} train rows ({len(train_enc)} features), {n_calib} calibration "
            f"rows (held out), {len(val_rows)} validation rows; {recipe_steps} steps per fine-tune")
    run.digests = distributed.from_main(_digests(run, train_enc, val_rows) if run.main else None)  # rank 0 decides
    if cfg.reuse and (differ := StageKeys.read(Path(cfg.reuse)).shared_differing(run.digests)):
        raise SensiEdgeError(f"--reuse {cfg.reuse}: its inputs differ from this run's ({', '.join(differ)}); nothing in "
                             "it can be reused (pass a run kept with the same model, rows and recipe, or drop --reuse)")


def _digests(run: Run, train_enc, val_rows) -> dict:
    """Every input a dense-side stage declares (stage_keys.STAGE_INPUTS), as digests of the data itself."""
    from .stage_keys import of_batches, of_model, of_recipe, of_rows

    cfg, d = run.cfg, run.data
    out = {"model": of_model(run.model_spec), "task": of_json(run.task.to_dict()), "train": of_rows(train_enc),
           "validation": of_json([of_rows(val_rows), run.task.name, run.seq_len, cfg.doc_stride]),
           "recipe": of_recipe(cfg.recipe), "warmup_steps": d["warmup_steps"], "calibration": of_batches(d["calib"]),
           "sensitivity_method": cfg.sensitivity_method, "probe_density": cfg.probe_density}
    # the analysed model is the output of the baseline (or, in one-fine-tune mode, the warm-up) stage
    out["analysed_model"] = of_json(inputs_of("baseline" if cfg.baseline else "warmup", out))
    return out


def save_model_atomic(model, tokenizer, path: Path) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def baseline(run: Run) -> DenseBaseline | None:
    """The dense fine-tune with the recipe: scored (the number to beat), kept as dense_model/ (analysed, trimmed
    from, and the distillation teacher). None in one-fine-tune mode."""
    from .finetune import finetune
    from .loading import load_for_task
    from .runners import TorchRunner

    path, d = run.work / "baseline.json", run.data
    if run.cfg.baseline and run.needs("baseline"):
        run.stage("baseline", "dense fine-tune with the same recipe")
        _, model = load_for_task(run.model_spec, run.task)
        model, _, info = finetune(model, d["tokenizer"], d["train_enc"], run.cfg.recipe, run.work / "ckpt-baseline",
                                  resume=run.resume)
        if run.main:
            metrics = d["ev"].score(TorchRunner(model), d["val_prep"]).metrics
            save_model_atomic(model, d["tokenizer"], run.work / "dense_model")
            DenseBaseline(metrics, info).save(path)
            run.record("baseline")
            shutil.rmtree(run.work / "ckpt-baseline", ignore_errors=True)
        run.timer.stop()
    distributed.barrier()
    return DenseBaseline.load(path) if path.exists() else None


def warmup(run: Run) -> None:
    """One-fine-tune mode only: a brief dense fine-tune (a share of the recipe's steps) to analyse."""
    from .finetune import finetune
    from .loading import load_for_task

    if run.cfg.baseline or not run.needs("warmup"):
        return
    run.stage("warmup", "brief dense fine-tune for sensitivity analysis (one-fine-tune mode)")
    d = run.data
    _, model = load_for_task(run.model_spec, run.task)
    model, _, _ = finetune(model, d["tokenizer"], d["train_enc"], run.cfg.recipe, run.work / "ckpt-warmup",
                           resume=run.resume, max_steps=d["warmup_steps"])
    if run.main:
        save_model_atomic(model, d["tokenizer"], run.analysed_dir)
        run.record("warmup")
        shutil.rmtree(run.work / "ckpt-warmup", ignore_errors=True)
    run.timer.stop()


def sensitivity(run: Run) -> SensitivityReport:
    """Unit importance and group probes of the analysed model on the calibration batches."""
    from .loading import load_for_task
    from .sensitivity import analyse, plot_heatmap

    path, cfg, w = run.work / "sensitivity.json", run.cfg, run.world
    if run.needs("sensitivity"):
        run.stage("sensitivity", f"{cfg.sensitivity_method}, probe density {cfg.probe_density}"
                                 + (f", calibration batches split over {w.size} processes" if w.distributed else ""))
        _, model = load_for_task(str(run.analysed_dir), run.task)
        rep = analyse(model.to(distributed.device_for(w)), run.data["calib"], cfg.probe_density, cfg.sensitivity_method)
        if run.main:
            plot_heatmap(rep, run.work / "sensitivity.png")
            rep.save(path)
            run.record("sensitivity")
        run.timer.stop()
    distributed.barrier()
    return SensitivityReport.load(path)


def make_plan(run: Run, sens: SensitivityReport) -> TrimPlan:
    """Sensitivity + budget -> plan.json; cheap and deterministic, so rank 0 plans and the others read it."""
    from .loading import load_for_task
    from .methods import PlanInputs, get_method, plan_with
    from .planner import Floors

    path, cfg, budget, method = run.work / "plan.json", run.cfg, run.budget, get_method(run.cfg.method)
    if run.todo(path) and run.main:
        run.stage("plan", f"{cfg.method}, {budget.kind} budget {budget.value}{' (absolute)' if budget.absolute else ''}")
        model = load_for_task(str(run.analysed_dir), run.task)[1] if method.reads_weights else None
        plan = plan_with(cfg.method, PlanInputs(
            sens, budget, cfg.recipe.seed, Floors.for_task(run.task.kind, cfg.floor_heads, cfg.floor_ffn),
            cfg.allocation, model, run.data["calib"] if method.reads_calibration else None))
        replace(plan, source={**plan.source, "method": cfg.method, "model": run.model_spec,
                              "task": run.task.name}).save(path)
        run.timer.stop()
    distributed.barrier()
    plan = TrimPlan.load(path)
    run.log(f"plan: heads per layer {list(plan.trimmed.heads)}, FFN per layer {list(plan.trimmed.ffn)}")
    return plan


def _retrain(run: Run, sens: SensitivityReport, plan: TrimPlan, model):
    """The trimmed fine-tune (masks grow over the ramp; optionally distilled); the masks are detached after."""
    from .finetune import TrimSchedule, finetune
    from .loading import load_for_task
    from .trim_rule import choose

    cfg, d = run.cfg, run.data
    choice = choose(cfg, plan, d["recipe_steps"], run.task.kind)
    run.stage("trim", f"fine-tune with the plan's masks (ramp over {cfg.ramp:.0%} of steps)"
                      + (", distilled from the dense model" if cfg.distill else "")
                      + (f" (hidden states, weight {cfg.distill_hidden:g})" if cfg.distill_hidden else "")
                      + f", then remove; {choice.recipe.epochs:g} epochs at {choice.recipe.learning_rate:g} "
                        f"({choice.rule}: {choice.why})")
    schedule = TrimSchedule(plan, sens.head_importance, sens.neuron_importance, cfg.ramp)
    teacher = load_for_task(str(run.work / "dense_model"), run.task)[1] if cfg.distill else None
    model, handle, info = finetune(model, d["tokenizer"], d["train_enc"], choice.recipe, run.work / "ckpt-trim",
                                   resume=run.resume, schedule=schedule, teacher=teacher,
                                   hidden_weight=cfg.distill_hidden)
    handle.remove()
    return model, {**info, **choice.to_dict()}


def trim(run: Run, sens: SensitivityReport, plan: TrimPlan) -> TrimResult | None:
    """Trimmed fine-tune (or Kwon's mask tuning), physical removal, masked-vs-pruned parity -> model/, trim.json."""
    from .loading import load_for_task
    from .methods import get_method
    from .runners import INPUT_NAMES
    from .surgery import apply_plan, parity

    path, method = run.work / "trim.json", get_method(run.cfg.method)
    # a retraining-free method's tuning is not distributed: rank 0 only
    if run.todo(path) and (run.main or method.retrains):
        _, model = load_for_task(str(run.analysed_dir), run.task)
        if method.retrains:
            model, info = _retrain(run, sens, plan, model)
        else:
            run.stage("trim", f"{method.name}: {method.summary}; tuning on the calibration rows, then removal")
            info = method.tune(model, plan, run.data["calib"])
        if run.main:
            model = model.cpu().eval()
            trimmed = apply_plan(model, plan)
            diff = parity(model, trimmed, plan, {k: v for k, v in run.data["calib"][0].items() if k in INPUT_NAMES})
            if not diff <= 1e-4:  # also catches NaN
                raise SensiEdgeError(f"internal error: pruned model differs from the masked one by {diff:.2e} (> 1e-4)")
            save_model_atomic(trimmed, run.data["tokenizer"], run.work / "model")
            TrimResult(info, diff).save(path)
            shutil.rmtree(run.work / "ckpt-trim", ignore_errors=True)
        run.timer.stop()
    distributed.barrier()
    return TrimResult.load(path) if run.main else None


def report(run: Run, sens: SensitivityReport, plan: TrimPlan, dense: DenseBaseline | None, trim_info: TrimResult) -> dict:
    """Reload model/ from disk, check its shape, score it -> report.json, report.md, the model card (rank 0)."""
    from .arch import adapter_for
    from .loading import load_for_task
    from .model_card import write as write_model_card
    from .run_report import build_report, render_markdown
    from .runners import TorchRunner

    d, model_dir = run.data, run.work / "model"
    run.stage("report", "reload the saved model and score it")
    _, compressed = load_for_task(str(model_dir), run.task)
    if adapter_for(compressed).geometry(compressed) != plan.trimmed:
        raise SensiEdgeError("internal error: the reloaded model's shape differs from the plan")
    metrics = d["ev"].score(TorchRunner(compressed.to(distributed.device_for(run.world))), d["val_prep"]).metrics
    run.timer.stop()
    rows = d["rows"]
    rep = build_report(run.cfg, run.task, run.model_spec, plan, sens, dense, trim_info, metrics, model_dir, rows["train"],
                       rows["calibration"], rows["validation"], d["recipe_steps"], run.timer.seconds, run.seq_len)
    write_json_atomic(run.work / "report.json", rep)
    (run.work / "report.md").write_text(render_markdown(rep))
    write_model_card(model_dir, rep)
    if not run.cfg.keep_intermediate:
        shutil.rmtree(run.work / "warm_model", ignore_errors=True)
        shutil.rmtree(run.work / "dense_model", ignore_errors=True)
    return rep
