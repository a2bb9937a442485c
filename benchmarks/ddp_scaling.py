"""One process against two (torchrun, gloo): wall time of the fine-tunes and of the sensitivity analysis.

    python -m benchmarks.ddp_scaling [--repeats 2] [--max-train-samples 1000]

MiniLM on rt-polarity, the same global batch (32) and rows in both; one process uses both CPU cores
as torch threads, two processes one thread each (``OMP_NUM_THREADS=1``, what torchrun sets). Runs
alternate (1, 2, 1, 2, ...) so drift on the machine hits both alike. Per run it records the stage wall
times from report.json, the plan and the group scores, and writes results/ddp_scaling.json and .md.
On a 2-core machine this measures the overhead of the multi-process path (gradient all-reduce over
gloo, split calibration batches), not the speed-up of adding hardware: both settings have the same two
cores. A finished run is skipped when the benchmark is restarted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DATA = ROOT.parent.parent / "shared" / "data" / "rt-polarity"
STAGES = ("baseline", "sensitivity", "trim")


def command(procs: int, out: Path, n_train: int) -> list[str]:
    args = ["compress", "--task", "sst2", "--data", str(DATA), "--output", str(out), "--epochs", "1",
            "--max-train-samples", str(n_train), "--max-eval-samples", "500", "--calibration-samples", "512",
            "--batch-size", "32", "--seed", "1"]
    if procs == 1:
        return [sys.executable, "-m", "sensi_edge", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
            "-m", "sensi_edge", *args]


def run(procs: int, out: Path, n_train: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1" if procs > 1 else "2", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(command(procs, out, n_train), env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"error: {procs}-process run failed: {res.stderr[-2000:]}")
    r = json.loads((out / "report.json").read_text())
    return {"processes": procs, "world_size": r["world_size"], "threads_per_process": r["threads"],
            "wall_seconds": r["wall_seconds"], "plan": r["plan"], "accuracy": r["compressed"]["accuracy"],
            "dense_accuracy": r["dense_baseline"]["accuracy"], "group_scores": r["sensitivity"]["group_scores"]}


def render(runs: list[dict], n_train: int) -> str:
    by = {p: [r for r in runs if r["processes"] == p] for p in (1, 2)}
    med = {p: {s: statistics.median(r["wall_seconds"][s] for r in rs) for s in STAGES} for p, rs in by.items() if rs}
    lines = ["# One process vs two (torchrun, gloo) on this machine", "",
             f"`python -m benchmarks.ddp_scaling` (module docstring: setup). MiniLM, rt-polarity, {n_train} train rows, "
             "1 epoch, global batch 32, 512 calibration rows; 1 process x 2 threads vs 2 processes x 1 thread, "
             f"{len(by[1])} + {len(by[2])} alternating runs, median wall seconds per stage.", "",
             "| stage | 1 process | 2 processes | ratio 2p / 1p |", "|---|---|---|---|"]
    for s in STAGES:
        if 1 in med and 2 in med:
            lines.append(f"| {s} | {med[1][s]:.1f} | {med[2][s]:.1f} | {med[2][s] / med[1][s]:.2f} |")
    lines.append("")
    same = all(r["plan"] == by[1][0]["plan"] for r in runs)
    diffs = [abs(r["group_scores"][k] - by[1][0]["group_scores"][k]) for r in by[2] for k in r["group_scores"]]
    lines.append(f"Plans identical across all runs: {'yes' if same else 'no'}; largest group-score difference 2p vs "
                 f"1p: {max(diffs):.2e} (dropout draws differ between the settings, so the fine-tunes are not "
                 "bit-identical). Accuracy (validation, 500 rows): "
                 + ", ".join(f"{r['processes']}p {r['accuracy']:.1f}" for r in runs) + ".")
    lines += ["", "What the ratio can say: the overhead of the multi-process path on the same two cores (all-reduce "
              "over gloo, two Python processes, one thread each). What it cannot say: the speed-up of adding "
              "devices; on N GPUs each process has its own device and the fine-tunes' and probes' work divides by N.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-train-samples", type=int, default=1000)
    args = ap.parse_args()
    path = RESULTS / "ddp_scaling.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    for i in range(args.repeats):
        for procs in (1, 2):
            if sum(r["processes"] == procs for r in runs) > i:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                print(f"[ddp_scaling] repeat {i + 1}: {procs} process(es)", flush=True)
                runs.append(run(procs, Path(tmp) / "run", args.max_train_samples))
            path.write_text(json.dumps({"max_train_samples": args.max_train_samples, "runs": runs}, indent=2) + "\n")
    (RESULTS / "ddp_scaling.md").write_text(render(runs, args.max_train_samples))
    print((RESULTS / "ddp_scaling.md").read_text())


if __name__ == "__main__":
    main()
