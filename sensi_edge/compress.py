"""``compress``: the whole Sensi-BERT run, stage by stage, in a resumable work folder.

Stages (each skipped on --resume when its artifact exists):
  baseline     dense fine-tune with the recipe -> baseline.json (the number to beat), dense_model/
  warmup       only without a baseline (one-fine-tune mode): brief dense fine-tune -> warm_model/
  sensitivity  per-group sensitivity of the analysed model -> sensitivity.json + .png
  plan         sensitivity + budget -> plan.json
  trim         fine-tune the analysed model with the plan's masks (gradual ramp; optionally distilled
               from the dense model), then physical removal and a masked-vs-pruned parity check
               -> model/, trim.json
  report       reload model/ from disk, score it -> report.json / report.md

The analysed model -- the one sensitivity is measured on and the trimmed fine-tune starts from --
is the fine-tuned dense model whenever the baseline runs (it has learnt the task, so its
sensitivities are the task's; measured in benchmarks/results/accuracy_at_budget.md), and the
warm-up model in one-fine-tune mode (``--no-baseline``: Sensi-BERT's warm-up -> trim, for users
who cannot pay for two fine-tunes).

Everything is written under ``OUT.partial/`` and renamed to ``OUT`` only when complete, so a
folder named OUT is always a finished run.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import distributed
from .artifacts import SensitivityReport, TrimPlan, refuse_occupied, write_json_atomic
from .errors import SensiEdgeError, first_line
from .finetune import Recipe
from .runlock import LOCK_NAME, RunLock

STAGES = ("baseline", "warmup", "sensitivity", "plan", "trim", "report")


@dataclass(frozen=True)
class CompressConfig:
    task: str
    data: str
    output: Path
    model: str | None = None
    budget: float = 0.5
    budget_kind: str = "params"  # params | flops | latency (ms per sequence, with latency_profile)
    latency_profile: Path | None = None  # sensi-edge profile output: plan against it, or just predict with it
    absolute: bool = False
    recipe: Recipe = field(default_factory=Recipe)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_seq_length: int | None = None  # default: the task's (128; 384 for squad)
    doc_stride: int = 128  # QA: overlap between windows of a long context
    calibration_samples: int = 1024
    sensitivity_method: str = "probe"
    probe_density: float = 0.5
    # one-fine-tune mode only (no baseline): the warm-up's share of the recipe's steps; None = 0.1
    warmup_fraction: float | None = None
    ramp: float = 0.3  # fraction of trimmed fine-tuning over which the trim grows to the plan
    allocation: str = "calibrated"  # planner.ALLOCATIONS
    floor_heads: float | None = None  # per-layer floors; None = the task kind's default (planner.Floors.for_task)
    floor_ffn: float | None = None
    distill: bool = False  # trimmed fine-tune also matches the dense fine-tuned model's outputs
    distill_hidden: float = 0.0  # with distill: weight of layer-wise hidden-state matching (0 = outputs only)
    baseline: bool = True
    method: str = "sensitivity"  # or a comparison method from baselines.METHODS
    reuse: Path | None = None  # a kept run whose baseline / warm-up / sensitivity stages this run reuses
    keep_intermediate: bool = False  # keep warm_model/ and dense_model/ in the output, for later reuse
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    num_labels: int | None = None

    def __post_init__(self):
        """Every rule about a single setting, in one place, before anything is loaded or written."""
        import math

        self.recipe.check()
        if not isinstance(self.budget, (int, float)) or not math.isfinite(self.budget):
            raise SensiEdgeError(f"--budget must be a finite number, got {self.budget}")
        from . import checks

        checks.at_least("--max-train-samples", self.max_train_samples)
        checks.at_least("--max-eval-samples", self.max_eval_samples)
        checks.at_least("--calibration-samples", self.calibration_samples, optional=False)
        checks.at_least("--num-labels", self.num_labels, 2)
        if self.max_seq_length is not None and not 8 <= self.max_seq_length <= 512:
            raise SensiEdgeError(f"--max-seq-length must be in [8, 512], got {self.max_seq_length}")
        checks.at_least("--doc-stride", self.doc_stride, 0, optional=False)
        checks = [("--probe-density", self.probe_density, True), ("--ramp", self.ramp, False)]
        if self.warmup_fraction is not None:
            checks.append(("--warmup-fraction", self.warmup_fraction, True))
        for name, value, lo_open in checks:
            if not ((0 < value) if lo_open else (0 <= value)) or value > 1:  # NaN fails both
                raise SensiEdgeError(f"{name} must be in {'(' if lo_open else '['}0, 1], got {value}")
        if self.sensitivity_method not in ("probe", "fisher"):
            raise SensiEdgeError(f"unknown --sensitivity {self.sensitivity_method!r}: use probe or fisher")
        if self.baseline and self.warmup_fraction is not None:
            raise SensiEdgeError("--warmup-fraction applies only with --no-baseline (one-fine-tune mode); with the "
                                 "baseline the fine-tuned dense model is analysed: drop --warmup-fraction")
        if not (math.isfinite(self.distill_hidden) and self.distill_hidden >= 0):
            raise SensiEdgeError(f"--distill-hidden must be a weight >= 0, got {self.distill_hidden}")
        if self.distill_hidden > 0 and not self.distill:
            raise SensiEdgeError("--distill-hidden weights a part of the distillation loss: add --distill")
        if self.distill and not self.baseline:
            raise SensiEdgeError("--distill learns from the fine-tuned dense model: drop --no-baseline")
        if self.method == "fisher-mask" and not self.baseline:
            raise SensiEdgeError("--method fisher-mask masks the fine-tuned dense model: drop --no-baseline")

    @property
    def effective_warmup_fraction(self) -> float | None:
        """The warm-up share actually used (None when the dense fine-tune is analysed instead)."""
        if self.baseline:
            return None
        return 0.1 if self.warmup_fraction is None else self.warmup_fraction

    def to_dict(self) -> dict:
        d = asdict(self)
        # paths as absolute, so a resume from another directory or with another spelling still matches
        d["output"] = str(Path(self.output).expanduser().resolve())
        d["reuse"] = str(Path(self.reuse).expanduser().resolve()) if self.reuse else None
        if self.latency_profile is not None:
            d["latency_profile"] = str(Path(self.latency_profile).expanduser().resolve())
        if Path(self.data).expanduser().exists():
            d["data"] = str(Path(self.data).expanduser().resolve())
        return d


@dataclass(frozen=True)
class CompressResult:
    output: Path
    report: dict


def _partial_dir(output: Path) -> Path:
    return output.parent / f"{output.name}.partial"


def check_output(output: Path, resume: bool) -> Path:
    """The work folder to use; refuses to clobber a finished or foreign folder, or a run still going."""
    from .runlock import owner_of

    refuse_occupied(output)
    work = _partial_dir(output)
    if work.exists() and (owner := owner_of(work)):
        raise SensiEdgeError(f"a sensi-edge run (pid {owner}) is still working in {work}; wait for it to finish "
                             "or stop it first")
    if work.exists() and not resume:
        raise SensiEdgeError(f"an unfinished run is in {work}; pass --resume to continue it (same flags) or delete "
                             "that folder")
    if resume and not work.exists():
        raise SensiEdgeError(f"--resume given but there is no unfinished run in {work}; drop --resume")
    if work.exists() and not (work / "run.json").is_file():
        raise SensiEdgeError(f"{work} is not an unfinished compress run (no run.json); choose another --output or "
                             "remove it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe = output.parent / f".{output.name}.write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SensiEdgeError(f"cannot write next to {output}: {exc.strerror}; choose a writable --output") from exc
    return work


class _Timer:
    """Wall time per stage, persisted every few seconds while a stage runs, so a run that was killed and
    resumed still reports all the time it took (killed parts included, to within one flush)."""

    FLUSH_SECONDS = 5.0

    def __init__(self, path: Path | None):
        """``path=None``: keep time in memory only (ranks other than 0 write nothing)."""
        import threading

        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self._lock = threading.Lock()
        self._running: tuple[str, float, float] | None = None  # stage, start, seconds before this session
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.FLUSH_SECONDS):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            if self._closed:
                return  # the folder may have been renamed or deleted: never write after close
            if self._running is not None:
                stage, t0, before = self._running
                self.seconds[stage] = before + time.perf_counter() - t0
            if self.path is not None:
                write_json_atomic(self.path, self.seconds)

    def start(self, stage: str) -> None:
        with self._lock:
            self._running = (stage, time.perf_counter(), self.seconds.get(stage, 0.0))

    def stop(self) -> None:
        self._flush()
        with self._lock:
            self._running = None

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        self._thread.join()
        try:
            self._flush()
        except OSError:
            pass  # best effort: a full disk must not hide the error that ended the run
        self._closed = True


def _subsample(ds, n, seed):
    return ds.shuffle(seed=seed).select(range(min(n, len(ds)))) if n is not None else ds


def compress(cfg: CompressConfig, resume: bool = False, log=print) -> CompressResult:
    from .arch import adapter_for
    from .data import load_task_data
    from .loading import load_config, resolve_model
    from .planner import ALLOCATIONS, NO_FLOORS, Budget, Floors, check_budget
    from .tasks import get_task

    # ---- validate everything before writing anything -------------------------------------
    output = Path(cfg.output).expanduser().resolve()
    task = get_task(cfg.task, list(cfg.text_columns), cfg.label_column, cfg.num_labels)
    seq_len = task.default_seq_length if cfg.max_seq_length is None else cfg.max_seq_length
    latency = None
    if cfg.latency_profile is not None:
        from .latency import load_profile

        latency = load_profile(cfg.latency_profile)
    budget = Budget(cfg.budget_kind, cfg.budget, cfg.absolute, seq_len, latency=latency if cfg.budget_kind == "latency"
                    else None)
    if cfg.allocation not in ALLOCATIONS:
        raise SensiEdgeError(f"unknown --allocation {cfg.allocation!r}: use one of {', '.join(ALLOCATIONS)}")
    Floors.for_task(task.kind, cfg.floor_heads, cfg.floor_ffn)  # range check before anything is written
    from .baselines import METHODS

    if cfg.method not in METHODS:
        raise SensiEdgeError(f"unknown --method {cfg.method!r}: use one of {', '.join(METHODS)}")
    model_spec = resolve_model(cfg.model)
    model_config = load_config(model_spec)
    dense = adapter_for(model_config).geometry_from_config(model_config)  # unsupported families stop here
    if latency is not None:
        latency.check_fits(dense)
    local = Path(model_spec)
    if local.is_dir() and not any((local / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        raise SensiEdgeError(f"{local} has no tokenizer files (tokenizer.json, vocab.txt ...); save the tokenizer "
                             "beside the model (tokenizer.save_pretrained) and rerun")
    max_pos = getattr(model_config, "max_position_embeddings", 512)
    if seq_len > max_pos:
        raise SensiEdgeError(f"--max-seq-length {seq_len} exceeds the model's {max_pos} positions; lower it")
    if cfg.method == "sensitivity":
        check_budget(dense, budget, Floors.for_task(task.kind, cfg.floor_heads, cfg.floor_ffn))
    else:
        check_budget(dense, budget, NO_FLOORS)
    if cfg.reuse and not (Path(cfg.reuse) / "run.json").is_file():
        raise SensiEdgeError(f"--reuse {cfg.reuse} is not a compress run kept with --keep-intermediate (no run.json); "
                            "pass the output folder of a run made with --keep-intermediate")
    w = distributed.world()
    if cfg.recipe.batch_size % w.size:
        raise SensiEdgeError(f"--batch-size {cfg.recipe.batch_size} is the global batch, split over the {w.size} "
                             f"processes: make it a multiple of {w.size}")
    train, val, task = load_task_data(cfg.data, task)
    distributed.join()
    # Under a launcher only rank 0 touches the folder; its verdict (or its error) reaches every rank.
    problem = None
    if w.is_main:
        try:
            check_output(output, resume)
        except SensiEdgeError as exc:
            problem = exc
    _agree(problem)
    work = _partial_dir(output)
    lock, timer = RunLock(work), None
    try:
        problem = None
        if w.is_main:
            try:
                _open_work(work, cfg, resume, lock, model_spec, log)
            except SensiEdgeError as exc:
                problem = exc
        _agree(problem)
        timer = _Timer(work / "timings.json") if w.is_main else _Timer(None)
        report = _run_stages(cfg, resume, log if w.is_main else _quiet, work, timer, task, budget, model_spec, train,
                             val, seq_len)
        timer.close()
        if w.is_main:
            _remove_temp_files(work)
            _publish(work, output)  # still under the lock: nobody can --resume a folder being renamed
            (output / LOCK_NAME).unlink(missing_ok=True)
        distributed.barrier()
        if not w.is_main:
            report = json.loads((output / "report.json").read_text())
        return CompressResult(output, report)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; finished stages and checkpoints are kept in {work}: rerun the same command "
                          "with --resume to continue") from None
    except BaseException:
        # A run that never finished a stage of its own or wrote a checkpoint leaves nothing behind; one that did
        # stays resumable.
        # Only a folder this process created and locked is ever deleted.
        if w.is_main and lock.held and not resume and not _has_progress(work):
            if timer is not None:
                timer.close()
            lock.release()
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        try:
            if timer is not None:
                timer.close()
        finally:
            lock.release()


def _quiet(message: str) -> None:
    """The log of ranks other than 0: one process speaks for the run."""


def _agree(problem: SensiEdgeError | None) -> None:
    """Raise rank 0's setup error on every rank (rank 0 re-raises its own), so none waits for the others."""
    message = distributed.from_main(str(problem) if problem is not None else None)
    if problem is not None:
        raise problem
    if message is not None:
        raise SensiEdgeError(message)


def _open_work(work: Path, cfg: CompressConfig, resume: bool, lock: RunLock, model_spec: str, log) -> None:
    """Create (or reopen for --resume) the work folder, lock it and record the run's settings."""
    if not resume:
        try:
            work.mkdir(parents=True)
        except FileExistsError:  # another run created it since the check
            raise SensiEdgeError(f"another run just started in {work}; choose another --output") from None
    if resume:  # checked before locking, so a refused resume leaves the folder exactly as it was
        saved = json.loads((work / "run.json").read_text())
        if saved.get("config") != json.loads(json.dumps(cfg.to_dict())):
            raise SensiEdgeError(f"--resume with different settings than the run in {work}; use the same flags "
                                 "or delete it")
    lock.acquire()
    if resume:
        write_json_atomic(work / "run.json", {**saved, "sessions": saved.get("sessions", 1) + 1})
        _remove_temp_files(work)  # left by a kill in the middle of an atomic write
    else:
        write_json_atomic(work / "run.json", {"config": cfg.to_dict(), "model_path": model_spec, "sessions": 1})
        if cfg.reuse:
            _copy_reusable(Path(cfg.reuse), work, cfg, log)


def _remove_temp_files(work: Path) -> None:
    for tmp in work.glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C / SIGINT / SIGTERM during a run, with the message that says how to resume; still a
    KeyboardInterrupt for library callers. Its folder is kept for --resume (the CLI exits 130)."""


def _has_progress(work: Path) -> bool:
    if any((work / n).exists() for n in ("baseline.json", "warm_model", "dense_model")):
        return True
    return any(p.is_dir() for p in work.glob("ckpt-*/checkpoint-*"))


def _run_stages(cfg, resume, log, work, timer, task, budget, model_spec, train, val, seq_len) -> dict:
    import torch
    from transformers import AutoTokenizer

    from .arch import adapter_for
    from .baselines import plan_with
    from .evaluation import batches
    from .finetune import TrimSchedule, finetune
    from .loading import load_for_task
    from .planner import Floors
    from .runners import INPUT_NAMES, TorchRunner
    from .sensitivity import analyse, plot_heatmap
    from .surgery import apply_plan, parity
    from .task_eval import evaluator_for

    torch.manual_seed(cfg.recipe.seed)
    w = distributed.world()
    main = w.is_main

    def todo(path: Path) -> bool:
        """Whether a stage still has to run, as rank 0 sees it (every rank then does the same)."""
        distributed.barrier()  # the previous stage's files are all written
        return not distributed.from_main(path.exists())

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_spec)
    except Exception as exc:
        raise SensiEdgeError(f"cannot load the tokenizer of {model_spec!r}: {first_line(exc)}") from exc
    ev = evaluator_for(task, tokenizer, seq_len, cfg.doc_stride)
    shuffled = train.shuffle(seed=cfg.recipe.seed)
    n_calib = min(cfg.calibration_samples, max(len(shuffled) // 5, 1))
    calib_rows = shuffled.select(range(n_calib))  # held out: never trained on
    train_rows = shuffled.select(range(n_calib, len(shuffled)))
    train_rows = _subsample(train_rows, cfg.max_train_samples, cfg.recipe.seed)
    val_rows = _subsample(val, cfg.max_eval_samples, cfg.recipe.seed)
    train_enc = ev.train_features(train_rows)
    val_prep = ev.prepare(val_rows)
    calib_enc = ev.train_features(calib_rows)
    # batched by length: far less padding, so the probes (one pass over these rows per group) cost less
    calib_enc = calib_enc.select(sorted(range(len(calib_enc)), key=lambda i: len(calib_enc[i]["input_ids"])))
    calib = batches(calib_enc, tokenizer, cfg.recipe.batch_size)
    steps_per_epoch = -(-len(train_enc) // cfg.recipe.batch_size)
    recipe_steps = int(round(steps_per_epoch * cfg.recipe.epochs))
    log(f"task {task.name}: {len(train_rows)} train rows ({len(train_enc)} features), {n_calib} calibration rows "
        f"(held out), {len(val_rows)} validation rows; {recipe_steps} steps per fine-tune")

    def stage(key: str, what: str) -> None:
        log(f"== {key}: {what}")
        timer.start(key)

    # ---- baseline --------------------------------------------------------------------------
    baseline_path = work / "baseline.json"
    if cfg.baseline and todo(baseline_path):
        stage("baseline", "dense fine-tune with the same recipe")
        _, model = load_for_task(model_spec, task)
        model, _, info = finetune(model, tokenizer, train_enc, cfg.recipe, work / "ckpt-baseline", resume=resume)
        if main:
            metrics = ev.score(TorchRunner(model.cpu()), val_prep).metrics
            _save_model_atomic(model, tokenizer, work / "dense_model")  # analysed, trimmed from, the teacher
            write_json_atomic(baseline_path, {"metrics": metrics, "train": info})
            shutil.rmtree(work / "ckpt-baseline", ignore_errors=True)
        timer.stop()
        del model
    distributed.barrier()
    baseline = json.loads(baseline_path.read_text()) if baseline_path.exists() else None

    # ---- warm-up (one-fine-tune mode only) + sensitivity ------------------------------------
    warm_dir = work / ("dense_model" if cfg.baseline else "warm_model")  # the analysed model
    if todo(warm_dir / "config.json"):
        if cfg.baseline:
            raise SensiEdgeError(f"internal error: the baseline stage left no {warm_dir}")
        stage("warmup", "brief dense fine-tune for sensitivity analysis (one-fine-tune mode)")
        _, model = load_for_task(model_spec, task)
        warm_steps = max(1, int(round(cfg.effective_warmup_fraction * recipe_steps)))
        model, _, info = finetune(model, tokenizer, train_enc, cfg.recipe, work / "ckpt-warmup", resume=resume,
                                  max_steps=warm_steps)
        if main:
            _save_model_atomic(model, tokenizer, warm_dir)
            shutil.rmtree(work / "ckpt-warmup", ignore_errors=True)
        timer.stop()
    sens_path = work / "sensitivity.json"
    if todo(sens_path):
        stage("sensitivity", f"{cfg.sensitivity_method}, probe density {cfg.probe_density}"
                             + (f", calibration batches split over {w.size} processes" if w.distributed else ""))
        _, model = load_for_task(str(warm_dir), task)
        report = analyse(model.to(distributed.device_for(w)), calib, cfg.probe_density, cfg.sensitivity_method)
        if main:
            plot_heatmap(report, work / "sensitivity.png")
            report.save(sens_path)
        timer.stop()
    distributed.barrier()
    sens = SensitivityReport.load(sens_path)

    # ---- plan --------------------------------------------------------------------------------
    plan_path = work / "plan.json"
    if todo(plan_path) and main:  # cheap and deterministic: rank 0 plans, the others read its plan
        stage("plan", f"{cfg.method}, {budget.kind} budget {budget.value}{' (absolute)' if budget.absolute else ''}")
        model = load_for_task(str(warm_dir), task)[1] if cfg.method in ("magnitude", "fisher-mask") else None
        plan = plan_with(cfg.method, sens, budget, cfg.recipe.seed, model,
                         floors=Floors.for_task(task.kind, cfg.floor_heads, cfg.floor_ffn), allocation=cfg.allocation,
                         calib=calib)
        plan = replace(plan, source={**plan.source, "method": cfg.method, "model": model_spec, "task": task.name})
        plan.save(plan_path)
        timer.stop()
    distributed.barrier()
    plan = TrimPlan.load(plan_path)
    log(f"plan: heads per layer {list(plan.trimmed.heads)}, FFN per layer {list(plan.trimmed.ffn)}")

    # ---- trimmed fine-tune + physical removal -------------------------------------------------
    trim_path = work / "trim.json"
    model_dir = work / "model"
    if todo(trim_path) and (main or cfg.method != "fisher-mask"):  # mask tuning is not distributed: rank 0 only
        _, model = load_for_task(str(warm_dir), task)
        if cfg.method == "fisher-mask":
            from .kwon import fold, tune_masks

            stage("trim", "least-squares mask tuning on the calibration rows, then removal (no retraining)")
            tuned, tuning_log = tune_masks(model, plan, calib)
            fold(model, tuned)
            info = {"steps": 0, "note": "retraining-free (Kwon et al. 2022): mask search, rearrangement, mask tuning",
                    "mask_tuning": tuning_log}
        else:
            stage("trim", f"fine-tune with the plan's masks (ramp over {cfg.ramp:.0%} of steps)"
                       + (", distilled from the dense model" if cfg.distill else "")
                       + (f" (hidden states, weight {cfg.distill_hidden:g})" if cfg.distill_hidden else "") + ", then remove")
            schedule = TrimSchedule(plan, sens.head_importance, sens.neuron_importance, cfg.ramp)
            teacher = load_for_task(str(work / "dense_model"), task)[1] if cfg.distill else None
            model, handle, info = finetune(model, tokenizer, train_enc, cfg.recipe, work / "ckpt-trim",
                                           resume=resume, schedule=schedule, teacher=teacher,
                                           hidden_weight=cfg.distill_hidden)
            del teacher
            handle.remove()
        if main:
            model = model.cpu().eval()
            trimmed = apply_plan(model, plan)
            probe = {k: v for k, v in calib[0].items() if k in INPUT_NAMES}
            diff = parity(model, trimmed, plan, probe)
            if not diff <= 1e-4:  # also catches NaN
                raise SensiEdgeError(f"internal error: pruned model differs from the masked one by {diff:.2e} (> 1e-4)")
            _save_model_atomic(trimmed, tokenizer, model_dir)
            write_json_atomic(trim_path, {"train": info, "masked_vs_pruned_max_abs_diff": diff})
            shutil.rmtree(work / "ckpt-trim", ignore_errors=True)
        timer.stop()
    distributed.barrier()
    if not main:
        return {}  # rank 0 scores, reports and publishes; compress() reads its report after the rename
    trim_info = json.loads(trim_path.read_text())

    # ---- report ------------------------------------------------------------------------------
    stage("report", "reload the saved model and score it")
    _, compressed = load_for_task(str(model_dir), task)
    if adapter_for(compressed).geometry(compressed) != plan.trimmed:
        raise SensiEdgeError("internal error: the reloaded model's shape differs from the plan")
    metrics = ev.score(TorchRunner(compressed), val_prep).metrics
    timer.stop()
    report = _build_report(cfg, task, model_spec, plan, sens, baseline, trim_info, metrics, model_dir, len(train_rows),
                           n_calib, len(val_rows), recipe_steps, timer.seconds, seq_len)
    write_json_atomic(work / "report.json", report)
    (work / "report.md").write_text(render_markdown(report))
    from .model_card import write as write_model_card

    write_model_card(model_dir, report)
    if not cfg.keep_intermediate:
        shutil.rmtree(work / "warm_model", ignore_errors=True)
        shutil.rmtree(work / "dense_model", ignore_errors=True)
    return report


def _publish(work: Path, output: Path) -> None:
    """The one step that makes a run visible under its final name (only complete runs are ever named OUT)."""
    if output.exists():
        output.rmdir()  # empty (checked before the run started)
    os.replace(work, output)


# What each reusable stage depends on: a stage is copied only when the kept run agrees on all of it.
_BASE_KEYS = ("task", "data", "model", "recipe", "max_train_samples", "max_eval_samples", "max_seq_length",
              "doc_stride", "calibration_samples", "text_columns", "label_column", "num_labels")
_WARM_KEYS = _BASE_KEYS + ("warmup_fraction",)
_SENS_KEYS = ("sensitivity_method", "probe_density")
REUSABLE = ("baseline.json", "dense_model", "warm_model", "sensitivity.json", "sensitivity.png")


def _copy_reusable(source: Path, work: Path, cfg: CompressConfig, log) -> None:
    """Seed a new run with the dense-side stages of a kept run that this run would compute identically.

    The dense baseline needs the same data, model and recipe; the warm model (one-fine-tune mode)
    also the same warm-up; the sensitivity analysis also the same probe settings and the same
    analysed model (the dense fine-tune when the baseline runs, else the warm model). The stages that depend on
    the budget or method (plan, trim) are never reused. A kept run that agrees on nothing is an error
    rather than a silent full recompute.
    """
    src = json.loads((source / "run.json").read_text())["config"]
    mine = json.loads(json.dumps(cfg.to_dict()))
    differs = [k for k in _BASE_KEYS if src.get(k) != mine[k]]
    if differs:
        k = differs[0]
        raise SensiEdgeError(f"--reuse {source}: its {k} ({src.get(k)}) differs from this run's ({mine[k]}); "
                             "nothing in it can be reused")
    if cfg.baseline and (source / "baseline.json").is_file() and not (source / "dense_model" / "config.json").is_file():
        raise SensiEdgeError(f"--reuse {source}: this run needs that run's fine-tuned dense model, which it did not "
                             "keep; rerun it with --keep-intermediate")
    same_warm = all(src.get(k) == mine[k] for k in _WARM_KEYS)
    # the analysed model: the dense fine-tune when the baseline runs, else the warm-up model
    src_baseline = src.get("baseline", True)
    analysed_same = src_baseline == cfg.baseline and (cfg.baseline or same_warm)
    take = ["dense_model", "baseline.json"] if cfg.baseline else []  # the model first: baseline.json marks it done
    if same_warm and not cfg.baseline:
        take.append("warm_model")
    if analysed_same and all(src.get(k) == mine[k] for k in _SENS_KEYS):
        take += ["sensitivity.json", "sensitivity.png"]
    # what the copied stages cost when they ran, so the report can still state a whole run's wall time
    ran = {**_json_or_empty(source / "reused_timings.json"), **_json_or_empty(source / "timings.json")}
    stage_of = {"baseline.json": "baseline", "warm_model": "warmup", "sensitivity.json": "sensitivity"}
    write_json_atomic(work / "reused_timings.json", {stage_of[n]: ran[stage_of[n]] for n in take
                                                     if n in stage_of and stage_of[n] in ran and (source / n).exists()})
    for name in take:  # each copied under a temp name and renamed: an interrupted copy leaves no torn stage
        tmp = work / f".{name}.copy"
        if (source / name).is_dir():
            shutil.copytree(source / name, tmp)
        elif (source / name).is_file():
            shutil.copy2(source / name, tmp)
        else:
            continue
        os.replace(tmp, work / name)
    log(f"reusing from {source}: " + (", ".join(n for n in REUSABLE if (work / n).exists()) or "nothing"))


def _json_or_empty(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_model_atomic(model, tokenizer, path: Path) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def count_saved_params(model_dir: Path) -> dict[str, int]:
    """Parameter counts read from the saved tensors themselves (not from the config)."""
    from safetensors import safe_open

    counts = {"encoder": 0, "total": 0}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                n = 1
                for s in st.get_slice(key).get_shape():
                    n *= s
                counts["total"] += n
                if ".encoder.layer." in key or key.startswith("encoder.layer."):
                    counts["encoder"] += n
    return counts


def fisher_predicted(sens) -> dict[str, float]:
    """Per group, the Fisher estimate of its probe's loss increase (the quantity the probes calibrate);
    its ranking is what the sweep page's seed-to-seed rank stability is computed on."""
    from .planner import fisher_predicted as predicted

    return {f"L{layer}.{kind}": v for (layer, kind), v in predicted(sens).items()}


def _build_report(cfg, task, model_spec, plan, sens, baseline, trim_info, metrics, model_dir, n_train, n_calib,
                  n_val, recipe_steps, seconds, seq) -> dict:
    from .cost import encoder_flops, encoder_params

    saved = count_saved_params(model_dir)
    dense_enc = encoder_params(plan.dense)
    total = sum(seconds.values())
    reused = _json_or_empty(Path(model_dir).parent / "reused_timings.json")
    whole = {**reused, **seconds}  # a whole run's stages: this run's own plus the ones it reused
    whole_total = sum(whole.values())
    sens_share = (whole.get("warmup", 0) + whole.get("sensitivity", 0)) / whole_total if whole_total else 0.0
    return {
        "task": task.to_dict(),
        "model": model_spec,
        "data": str(Path(cfg.data).expanduser().resolve()) if Path(cfg.data).expanduser().exists() else cfg.data,
        "metric": task.metric,
        "method": cfg.method,
        "reused_stages_from": str(cfg.reuse) if cfg.reuse else None,
        "rows": {"train": n_train, "calibration_held_out": n_calib, "validation": n_val},
        "recipe": cfg.recipe.to_dict(),
        "recipe_steps": recipe_steps,
        "dense_baseline": baseline["metrics"] if baseline else None,
        "compressed": metrics,
        "metric_delta": (metrics[task.metric] - baseline["metrics"][task.metric]) if baseline else None,
        "params": {
            "counted_from": "saved safetensors; encoder = parameters inside encoder layers (embeddings, pooler, head excluded)",
            "encoder_before": dense_enc,
            "encoder_after_planned": encoder_params(plan.trimmed),
            "encoder_after_saved": saved["encoder"],
            "encoder_ratio": saved["encoder"] / dense_enc,
            "total_after_saved": saved["total"],
            "total_before": saved["total"] - saved["encoder"] + dense_enc,
        },
        "flops": {
            "seq_len": seq,
            "counted": "encoder matmul FLOPs (2 x MACs) per sequence",
            "encoder_before": encoder_flops(plan.dense, seq),
            "encoder_after": encoder_flops(plan.trimmed, seq),
            "encoder_ratio": encoder_flops(plan.trimmed, seq) / encoder_flops(plan.dense, seq),
        },
        "budget": plan.budget,
        "latency_prediction": _latency_prediction(cfg, plan),
        "plan": {"heads_per_layer": list(plan.trimmed.heads), "ffn_per_layer": list(plan.trimmed.ffn),
                 "dense_heads": list(plan.dense.heads), "dense_ffn": list(plan.dense.ffn)},
        "sensitivity": {"method": sens.method, "probe_density": sens.probe_density,
                        "calibration_rows": sens.calibration_rows, "warmup_fraction": cfg.effective_warmup_fraction,
                        "analysed_model": "dense fine-tune" if cfg.baseline else "warm-up fine-tune",
                        "seconds": round(sens.seconds, 1),
                        "group_scores": {f"L{g.layer}.{g.kind}": g.score for g in sens.groups},
                        "fisher_predicted": fisher_predicted(sens),
                        "ranking_least_to_most": [f"L{g.layer}.{g.kind}" for g in sorted(sens.groups, key=lambda g: g.score)]},
        "allocation": {"name": cfg.allocation if cfg.method == "sensitivity" else None,
                       "floors": plan.source.get("floors"), "calibration": plan.source.get("calibration")},
        "distill": cfg.distill,
        "distill_hidden": cfg.distill_hidden,
        "masked_vs_pruned_max_abs_diff": trim_info["masked_vs_pruned_max_abs_diff"],
        "wall_seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(total, 1)},
        "reused_wall_seconds": {k: round(v, 1) for k, v in reused.items()},
        "whole_run_wall_seconds": round(whole_total, 1),
        "sensitivity_share_of_wall_time": round(sens_share, 4),
        "threads": __import__("torch").get_num_threads(),
        **_launch_facts(cfg),
        "sessions": json.loads((Path(model_dir).parent / "run.json").read_text()).get("sessions", 1),
    }


def _latency_prediction(cfg, plan) -> dict | None:
    """Predicted ms per sequence of the dense and the trimmed model from --latency-profile (None without one);
    ``bench`` measures the exported model against it."""
    if cfg.latency_profile is None:
        return None
    from .latency import load_profile

    m = load_profile(cfg.latency_profile)
    return {"profile": str(Path(cfg.latency_profile).expanduser().resolve()), "seq_len": m.seq_len,
            "threads": m.threads, "precision": m.precision, "cpu": m.cpu,
            "dense_ms": round(m.predict_ms(plan.dense), 4), "trimmed_ms": round(m.predict_ms(plan.trimmed), 4)}


def _launch_facts(cfg) -> dict:
    """How the run was launched: processes (torchrun / accelerate launch), the device they trained on,
    the fine-tuning precision."""
    w = distributed.world()
    return {"world_size": w.size, "device_type": distributed.device_for(w).split(":")[0],
            "precision": cfg.recipe.precision}


def render_markdown(r: dict) -> str:
    m = r["metric"]
    base = r["dense_baseline"][m] if r["dense_baseline"] else None
    lines = [
        f"# sensi-edge compress report: {r['task']['name']}",
        "",
        f"- model: `{r['model']}`",
        f"- data: `{r['data']}` (train {r['rows']['train']}, held-out calibration {r['rows']['calibration_held_out']}, "
        f"validation {r['rows']['validation']})",
        f"- budget: {r['budget']['value']} of encoder {r['budget']['kind']}" + (" (absolute)" if r["budget"]["absolute"] else "")
        + f" at seq len {r['budget']['seq_len']}",
        "",
        "| | dense baseline | compressed |",
        "|---|---|---|",
        f"| validation {m} | {base:.2f} |" if base is not None else f"| validation {m} | (not run) |",
    ]
    lines[-1] += f" {r['compressed'][m]:.2f} |"
    p, f = r["params"], r["flops"]
    lines += [
        f"| encoder params | {p['encoder_before']:,} | {p['encoder_after_saved']:,} ({p['encoder_ratio']:.1%}) |",
        f"| total params | {p['total_before']:,} | {p['total_after_saved']:,} |",
        f"| encoder GFLOPs @ seq {f['seq_len']} | {f['encoder_before'] / 1e9:.3f} | {f['encoder_after'] / 1e9:.3f} ({f['encoder_ratio']:.1%}) |",
        "",
        f"Heads per layer: {r['plan']['heads_per_layer']} (of {r['plan']['dense_heads']})  ",
        f"FFN neurons per layer: {r['plan']['ffn_per_layer']} (of {r['plan']['dense_ffn']})  ",
        f"Masked vs pruned max |logit diff|: {r['masked_vs_pruned_max_abs_diff']:.2e}  ",
        f"Analysed and trimmed from: the {r['sensitivity']['analysed_model']}; method {r['method']}"
        + (f", allocation {r['allocation']['name']}, floors {r['allocation']['floors']}" if r["allocation"]["name"] else "")
        + f"; distilled from the dense model: {'yes' if r['distill'] else 'no'}",
        "",
        "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in r["wall_seconds"].items())
        + (f"; reused from {r['reused_stages_from']}: " + ", ".join(f"{k} {v}" for k, v in r["reused_wall_seconds"].items())
           + f" (whole run {r['whole_run_wall_seconds']})" if r.get("reused_wall_seconds") else "")
        + f"; sensitivity (warm-up + probes) = {r['sensitivity_share_of_wall_time']:.1%} of the whole run; {r['threads']} threads.",
        "",
    ]
    return "\n".join(lines)
