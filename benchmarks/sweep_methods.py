"""Sweep: Sensi-BERT against the comparison methods, budgets and seeds, side by side.

    python -m benchmarks.sweep_methods [--tasks rt-polarity qnli-squad snli] [--budgets 0.3 0.5 0.7]
                                       [--seeds 42 43] [--methods sensitivity uniform magnitude random fisher-mask truncate]

Per task and seed, one run (sensitivity @ the first budget) keeps its dense baseline, warm model
and sensitivity analysis; every other budget and method reuses them (--reuse), so the dense side
is paid once and every method sees the same baseline, recipe, removal and accounting. Each
finished run's report is copied to results/sweep/<task>_<method>_b<budget>_s<seed>.json, so an
interrupted sweep resumes where it stopped (a half-finished run resumes with --resume).
``python -m benchmarks.sweep_methods --summary`` rebuilds results/sweep.md (mean +- spread over seeds).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sensi_edge.baselines import METHODS
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.finetune import Recipe

from .compress_tasks import RUNS, SHARED

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "sweep"


def run_one(name, method, budget, seed, workdir, reuse):
    task, extra = RUNS[name][0], dict(RUNS[name][1])
    epochs, lr = extra.pop("epochs", 3.0), extra.pop("learning_rate", 5e-5)
    out = workdir / f"{name}_{method}_b{budget}_s{seed}"
    cfg = CompressConfig(task=task, data=str(SHARED / name), output=out, budget=budget, method=method,
                         recipe=Recipe(epochs=epochs, learning_rate=lr, seed=seed), reuse=reuse,
                         keep_intermediate=reuse is None, **extra)
    result = compress(cfg, resume=(workdir / f"{out.name}.partial").exists())
    return result


def summary() -> None:
    rows = [json.loads(f.read_text()) for f in sorted(OUT.glob("*.json"))]
    groups: dict = {}
    for r in rows:
        key = (Path(r["data"]).name, r["budget"]["value"], r["method"])
        groups.setdefault(key, []).append(r)
    lines = ["# Sweep: metric by task, budget and method (mean +- spread over seeds)", "",
             "| data | budget | method | seeds | metric | dense | compressed | encoder params kept |", "|---|---|---|---|---|---|---|---|"]
    for (data, budget, method), rs in sorted(groups.items()):
        m = rs[0]["metric"]
        vals = [r["compressed"][m] for r in rs]
        dense = [r["dense_baseline"][m] for r in rs]
        spread = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        lines.append(f"| {data} | {budget} | {method} | {len(rs)} | {m} | {statistics.mean(dense):.2f} | "
                     f"{statistics.mean(vals):.2f} +- {spread:.2f} | {statistics.mean(r['params']['encoder_ratio'] for r in rs):.1%} |")
    (ROOT / "results" / "sweep.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["rt-polarity", "qnli-squad", "snli"], choices=list(RUNS))
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--workdir", type=Path, default=ROOT.parent / "runs" / "sweep")
    ap.add_argument("--summary", action="store_true", help="only rebuild results/sweep.md")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for name in args.tasks:
            for seed in args.seeds:
                # the anchor keeps its dense baseline, warm model and sensitivity for every other run
                anchor = args.workdir / f"{name}_sensitivity_b{args.budgets[0]}_s{seed}"
                combos = [("sensitivity", args.budgets[0])] + [(m, b) for b in args.budgets for m in args.methods
                                                              if (m, b) != ("sensitivity", args.budgets[0])]
                for method, budget in combos:
                    dst = OUT / f"{name}_{method}_b{budget}_s{seed}.json"
                    if dst.exists():
                        continue
                    is_anchor = (method, budget) == ("sensitivity", args.budgets[0])
                    result = run_one(name, method, budget, seed, args.workdir, None if is_anchor else anchor)
                    dst.write_text(json.dumps(result.report, indent=2) + "\n")
                    summary()
    summary()
    print((ROOT / "results" / "sweep.md").read_text())


if __name__ == "__main__":
    main()
