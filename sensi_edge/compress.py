"""``compress``: the whole Sensi-BERT run, stage by stage, in a resumable work folder.

Stages (each skipped on --resume when its artifact exists):
  baseline     dense fine-tune with the recipe -> baseline.json (the number to beat), dense_model/
  warmup       only without a baseline (one-fine-tune mode): brief dense fine-tune -> warm_model/
  sensitivity  per-group sensitivity of the analysed model -> sensitivity.json + .png
  plan         sensitivity + budget -> plan.json
  trim         fine-tune the analysed model with the plan's masks (gradual ramp; optionally distilled
               from the dense model; its recipe: the flags', or twice the steps at twice the rate under
               the deep-trim rule of trim_rule.py, or the dense recipe), then physical removal and a
               masked-vs-pruned parity check -> model/, trim.json
  report       reload model/ from disk, score it -> report.json / report.md

The analysed model -- the one sensitivity is measured on and the trimmed fine-tune starts from --
is the fine-tuned dense model whenever the baseline runs (it has learnt the task, so its
sensitivities are the task's; measured in benchmarks/results/accuracy_at_budget.md), and the
warm-up model in one-fine-tune mode (``--no-baseline``: Sensi-BERT's warm-up -> trim, for users
who cannot pay for two fine-tunes).

Everything is written under ``OUT.partial/`` and renamed to ``OUT`` only when complete, so a
folder named OUT is always a finished run. This module owns that folder (checks, lock, resume, publish);
the stages themselves are ``stages.py`` (which also take dense-side stages from ``--reuse`` when their input
keys match, ``stage_keys.py``), the report ``run_report.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import distributed
from .artifacts import refuse_occupied, write_json_atomic
from .errors import SensiEdgeError
from .recipe import Recipe
from .methods import METHODS
from .options import option
from .planner import ALLOCATIONS
from .runlock import LOCK_NAME, RunLock
from .stage_keys import FILE as STAGE_KEYS

STAGES = ("baseline", "warmup", "sensitivity", "plan", "trim", "report")


@dataclass(frozen=True)
class CompressConfig:
    """Every setting of a compress run; each field's help is the CLI's (``cli/generate.py`` builds the flags)."""

    task: str = option(help="sst2 | mnli | qnli | qqp | text-classification | squad")
    data: str = option(help="folder of split files (train.jsonl, validation.jsonl ...) or hub NAME[:CONFIG]")
    output: Path = option(help="run folder; the model lands in OUTPUT/model, the report in OUTPUT/report.json")
    model: str | None = option(None, help="hub id or local folder", show_default="packaged all-MiniLM-L6-v2")
    budget: float = option(0.5, help="fraction (0, 1] of the dense encoder to keep, or a count with --absolute")
    budget_kind: str = option("params", choices=("params", "flops", "latency"),
                              help="params | flops (FLOPs at --max-seq-length) | latency (--budget in ms per "
                                   "sequence, needs --latency-profile)")
    latency_profile: Path | None = option(None, help="a `sensi-edge profile` JSON: the latency budget's table, and the "
                                                     "report's predicted latency")
    absolute: bool = option(False, help="read --budget as an absolute encoder parameter / FLOP count")
    recipe: Recipe = option(factory=Recipe, help="the fine-tuning recipe (its fields are flags of their own)")
    max_train_samples: int | None = option(None, help="subsample the training split")
    max_eval_samples: int | None = option(None, help="subsample the validation split")
    max_seq_length: int | None = option(None, help="tokens per row", show_default="128, 384 for squad")
    doc_stride: int = option(128, help="squad: token overlap between windows of a long context (capped at half of "
                                       "--max-seq-length)")
    calibration_samples: int = option(1024, help="held-out training rows for sensitivity analysis")
    sensitivity_method: str = option("probe", flag="sensitivity", choices=("probe", "fisher"),
                                     help="probe (trim each group, measure loss) | fisher (gradient estimate)")
    probe_density: float = option(0.5, help="density each group is trimmed to when probed")
    # one-fine-tune mode only (no baseline): the warm-up's share of the recipe's steps; None = 0.1
    warmup_fraction: float | None = option(None, show_default="0.1",
                                           help="one-fine-tune mode (--no-baseline): brief dense fine-tune before "
                                                "sensitivity, as a fraction of the recipe's steps")
    ramp: float = option(0.3, help="fraction of trimmed fine-tuning over which the trim grows (0 = one-shot)")
    # the trimmed fine-tune's own epochs / learning rate (None = the recipe's, or twice it under the deep-trim rule,
    # trim_rule.py): a model trimmed to 30% has more to recover than the dense model had to learn, so a user may
    # pay it more steps (the report states what ran and why)
    trim_epochs: float | None = option(None, help="epochs of the trimmed fine-tune",
                                       show_default="--epochs; 2x under the deep-trim rule")
    trim_learning_rate: float | None = option(None, help="learning rate of the trimmed fine-tune",
                                              show_default="--learning-rate; 2x under the deep-trim rule")
    deep_trim: bool = option(True, help="with no --trim-* flag: a teacher-free trim to < 40% of the encoder after a "
                                        "recipe of < 500 steps fine-tunes twice the epochs at twice the learning rate "
                                        "(--no-deep-trim: the recipe's)")
    allocation: str = option("calibrated", choices=ALLOCATIONS,
                             help="calibrated (Fisher per unit of cost, scaled per group by its measured probe, shrunk "
                                  "to the median within the probe's noise) | calibrated-unshrunk (no shrinkage) | rank "
                                  "(rank rule of the first version)")
    floor_heads: float | None = option(None, help="share of every layer's heads always kept",
                                       show_default="0.15; squad 0.3")
    floor_ffn: float | None = option(None, help="share of every layer's FFN neurons always kept",
                                     show_default="0.1; squad 0.2")
    distill: bool = option(False, help="trimmed fine-tune also matches the dense fine-tuned model's outputs (needs the "
                                       "baseline)")
    distill_hidden: float = option(0.0, help="with --distill: weight of layer-wise hidden-state matching (0 = outputs "
                                             "only)")
    accurate: bool = option(False, help="the measured accurate recipe in one flag: --distill, --distill-hidden 1 (unless a "
                                        "weight > 0 is given) and --trim-epochs twice --epochs (unless given); about 1.5-2x "
                                        "the run's time")
    baseline: bool = option(True, help="fine-tune the dense model first: scored as the baseline, analysed and trimmed "
                                       "from (--no-baseline: one fine-tune, from a brief warm-up)")
    method: str = option("sensitivity", help=" | ".join(f"{m.name} ({m.summary})" for m in METHODS.values()))
    reuse: Path | None = option(None, help="take the baseline / warm-up / sensitivity stages of a run kept with "
                                           "--keep-intermediate when this run's inputs match")
    keep_intermediate: bool = option(False, help="keep warm_model/ and dense_model/ so other budgets/methods can --reuse "
                                                 "them")
    text_columns: tuple[str, ...] = option((), flag="text_column", help="text column(s) for text-classification (1 or 2)")
    label_column: str | None = option(None, help="label column for text-classification")
    num_labels: int | None = option(None, help="label count", show_default="preset or inferred")

    def __post_init__(self):
        """Every rule about a single setting, in one place, before anything is loaded or written."""
        import math

        self.recipe.check()
        if self.trim_epochs is not None and not (math.isfinite(self.trim_epochs) and self.trim_epochs > 0):
            raise SensiEdgeError(f"--trim-epochs must be a number > 0, got {self.trim_epochs}")
        if self.trim_learning_rate is not None and not (math.isfinite(self.trim_learning_rate)
                                                        and 0 < self.trim_learning_rate < 1):
            raise SensiEdgeError(f"--trim-learning-rate must be in (0, 1), got {self.trim_learning_rate:g}")
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
        if self.accurate:
            self._resolve_accurate()
        if not (math.isfinite(self.distill_hidden) and self.distill_hidden >= 0):
            raise SensiEdgeError(f"--distill-hidden must be a weight >= 0, got {self.distill_hidden}")
        if self.distill_hidden > 0 and not self.distill:
            raise SensiEdgeError("--distill-hidden weights a part of the distillation loss: add --distill")
        if self.distill and not self.baseline:
            raise SensiEdgeError("--distill learns from the fine-tuned dense model: drop --no-baseline")
        from .methods import get_method

        if get_method(self.method).needs_dense_fine_tune and not self.baseline:
            raise SensiEdgeError(f"--method {self.method} plans on the fine-tuned dense model: drop --no-baseline")

    def _resolve_accurate(self) -> None:
        """``--accurate`` = the flags that met issue 12's targets where the default did not (rt-polarity and
        qnli-squad at 0.5 and 0.3, 3 seeds each: +0.3 to +3.1 points per seed over the default, 12 of 12 pairs).
        A teacher pass per step and twice the trimmed steps are why it is not the default. Resolved here, once, so
        the stages, the report and the stage keys see plain --distill / --distill-hidden / --trim-epochs values."""
        if not self.baseline:
            raise SensiEdgeError("--accurate distils from the fine-tuned dense model: drop --no-baseline")
        object.__setattr__(self, "distill", True)
        if self.distill_hidden == 0:
            object.__setattr__(self, "distill_hidden", 1.0)
        if self.trim_epochs is None:
            object.__setattr__(self, "trim_epochs", 2 * self.recipe.epochs)

    @property
    def trim_recipe(self) -> Recipe:
        """The dense recipe with --trim-epochs / --trim-learning-rate; ``trim_rule.choose`` may still double it
        (the deep-trim rule needs the plan, which a config does not know)."""
        return replace(self.recipe, epochs=self.recipe.epochs if self.trim_epochs is None else self.trim_epochs,
                       learning_rate=self.recipe.learning_rate if self.trim_learning_rate is None
                       else self.trim_learning_rate)

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


def _validate(cfg: CompressConfig):
    """Every check that needs the model's config or the task, before anything is loaded or written:
    (task, sequence length, budget, resolved model)."""
    from .arch import adapter_for
    from .loading import load_config, resolve_model
    from .methods import get_method
    from .planner import ALLOCATIONS, NO_FLOORS, Budget, Floors, check_budget
    from .tasks import get_task

    task = get_task(cfg.task, list(cfg.text_columns), cfg.label_column, cfg.num_labels)
    seq_len = task.default_seq_length if cfg.max_seq_length is None else cfg.max_seq_length
    latency = None
    if cfg.latency_profile is not None:
        from .latency import load_profile

        latency = load_profile(cfg.latency_profile)
    budget = Budget(cfg.budget_kind, cfg.budget, cfg.absolute, seq_len,
                    latency=latency if cfg.budget_kind == "latency" else None)
    if cfg.allocation not in ALLOCATIONS:
        raise SensiEdgeError(f"unknown --allocation {cfg.allocation!r}: use one of {', '.join(ALLOCATIONS)}")
    floors = Floors.for_task(task.kind, cfg.floor_heads, cfg.floor_ffn)  # range check before anything is written
    method = get_method(cfg.method)
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
    check_budget(dense, budget, floors if method.own_allocation else NO_FLOORS)
    if cfg.reuse and not (Path(cfg.reuse) / "run.json").is_file():
        raise SensiEdgeError(f"--reuse {cfg.reuse} is not a compress run kept with --keep-intermediate (no run.json); "
                             "pass the output folder of a run made with --keep-intermediate")
    if cfg.reuse and not (Path(cfg.reuse) / STAGE_KEYS).is_file():
        raise SensiEdgeError(f"--reuse {cfg.reuse} was kept by an older sensi-edge (no {STAGE_KEYS}), so its stages "
                             "cannot be matched to this run's inputs; rerun it with --keep-intermediate")
    w = distributed.world()
    if cfg.recipe.batch_size % w.size:
        raise SensiEdgeError(f"--batch-size {cfg.recipe.batch_size} is the global batch, split over the {w.size} "
                             f"processes: make it a multiple of {w.size}")
    return task, seq_len, budget, model_spec


def compress(cfg: CompressConfig, resume: bool = False, log=print) -> CompressResult:
    """The whole run in OUT.partial/, renamed to OUT when complete (module docstring: the stages)."""
    from .data import load_task_data

    output = Path(cfg.output).expanduser().resolve()
    task, seq_len, budget, model_spec = _validate(cfg)
    w = distributed.world()
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
                _open_work(work, cfg, resume, lock, model_spec)
            except SensiEdgeError as exc:
                problem = exc
        _agree(problem)
        timer = _Timer(work / "timings.json") if w.is_main else _Timer(None)
        from .stages import Run, run_all

        report = run_all(Run(cfg, resume, log if w.is_main else _quiet, work, timer, task, budget, model_spec, seq_len),
                         train, val)
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


def _open_work(work: Path, cfg: CompressConfig, resume: bool, lock: RunLock, model_spec: str) -> None:
    """Create (or reopen for --resume) the work folder, lock it and record the run's settings."""
    if not resume:
        try:
            work.mkdir(parents=True)
        except FileExistsError:  # another run created it since the check
            raise SensiEdgeError(f"another run just started in {work}; choose another --output") from None
    if resume:  # checked before locking, so a refused resume leaves the folder exactly as it was
        saved = json.loads((work / "run.json").read_text())
        before, now = saved.get("config", {}), json.loads(json.dumps(cfg.to_dict()))
        # a run started before the deep-trim rule existed ran without it: --no-deep-trim resumes it, and a resume
        # with the default is told so rather than "different settings" (the user changed no flag)
        if "deep_trim" not in before and now.get("deep_trim") and {**before, "deep_trim": True} == now:
            raise SensiEdgeError(f"the run in {work} was started before the deep-trim rule and runs without it; "
                                 "add --no-deep-trim to --resume it")
        if {"deep_trim": False, **before} != now:
            raise SensiEdgeError(f"--resume with different settings than the run in {work}; use the same flags "
                                 "or delete it")
    lock.acquire()
    if resume:
        write_json_atomic(work / "run.json", {**saved, "sessions": saved.get("sessions", 1) + 1})
        _remove_temp_files(work)  # left by a kill in the middle of an atomic write
    else:
        write_json_atomic(work / "run.json", {"config": cfg.to_dict(), "model_path": model_spec, "sessions": 1})


def _remove_temp_files(work: Path) -> None:
    """What a kill mid-write leaves: atomic writes' ``.*.tmp`` files, --reuse copies' ``.*.copy`` files or folders."""
    for tmp in [*work.glob(".*.tmp"), *work.glob(".*.copy")]:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.is_file():
            tmp.unlink()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C / SIGINT / SIGTERM during a run, with the message that says how to resume; still a
    KeyboardInterrupt for library callers. Its folder is kept for --resume (the CLI exits 130)."""


def _has_progress(work: Path) -> bool:
    if any((work / n).exists() for n in ("baseline.json", "warm_model", "dense_model")):
        return True
    return any(p.is_dir() for p in work.glob("ckpt-*/checkpoint-*"))


def _publish(work: Path, output: Path) -> None:
    """The one step that makes a run visible under its final name (only complete runs are ever named OUT)."""
    if output.exists():
        output.rmdir()  # empty (checked before the run started)
    os.replace(work, output)
