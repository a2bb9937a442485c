"""Sweep: Sensi-BERT against the comparison methods, budgets and seeds, side by side.

    python -m benchmarks.sweep_methods [--tasks rt-polarity qnli-squad snli] [--budgets 0.3 0.5 0.7]
        [--seeds 42 43] [--methods sensitivity uniform magnitude random fisher-mask truncate]
        [--max-train-samples N] [--epochs E] [--no-latency] [--summary]

Per task and seed, one run (sensitivity @ the first budget) keeps its dense baseline, warm model and
sensitivity analysis; every other budget and method reuses them (--reuse), so the dense side is paid
once and every method sees the same baseline, recipe, physical removal and accounting. Each finished
run's report goes to results/sweep/<task>_<method>_b<budget>_s<seed>.json, so an interrupted sweep
resumes where it stopped (a half-finished run resumes with --resume).

Then, per task, every model of the first seed (and the fine-tuned dense model) is exported to
ONNX with dynamic int8 and verified on the validation split, and all int8 models are timed
interleaved in one `bench` run against the dense PyTorch model (1 thread, seq 128; SQuAD 384):
results/sweep/latency_<task>.json. ``--summary`` only rebuilds results/sweep.md and the Pareto
plots results/sweep_<task>.png from what is there.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sensi_edge.methods import METHODS
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.finetune import Recipe

from .compress_tasks import RUNS, SHARED

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "sweep"
PAGE = ROOT / "results" / "sweep.md"
GRID_BUDGETS, GRID_SEEDS = (0.3, 0.5, 0.7), (42, 43)  # the grid the page is meant to show in full


def _settings(name: str, max_train_samples: int | None, epochs: float | None, warmup_fraction: float | None,
              max_eval_samples: int | None = None) -> dict:
    task, extra = RUNS[name][0], dict(RUNS[name][1])  # the same settings as benchmarks.compress_tasks
    if max_train_samples is not None:
        extra["max_train_samples"] = max_train_samples
    if epochs is not None:
        extra["epochs"] = epochs
    if warmup_fraction is not None:
        # sweep runs keep their dense baseline, which is what gets analysed now: a warm-up no longer applies
        raise SystemExit("--warmup-fraction applied to the first version of the method (a warm-up model was analysed); "
                         "the sweep's runs analyse the fine-tuned dense model: drop it")
    if max_eval_samples is not None:
        extra["max_eval_samples"] = max_eval_samples
    return {"task": task, **extra}


def run_one(name, method, budget, seed, workdir, reuse, settings):
    extra = dict(settings)
    task = extra.pop("task")
    epochs, lr = extra.pop("epochs", 3.0), extra.pop("learning_rate", 5e-5)
    out = workdir / f"{name}_{method}_b{budget}_s{seed}"
    cfg = CompressConfig(task=task, data=str(SHARED / name), output=out, budget=budget, method=method,
                         recipe=Recipe(epochs=epochs, learning_rate=lr, seed=seed), reuse=reuse,
                         keep_intermediate=reuse is None, **extra)
    return compress(cfg, resume=(workdir / f"{out.name}.partial").exists())


def _result_path(name, method, budget, seed) -> Path:
    return OUT / f"{name}_{method}_b{budget}_s{seed}.json"


def train_all(args) -> None:
    for name in args.tasks:
        settings = _settings(name, args.max_train_samples, args.epochs, args.warmup_fraction,
                             args.max_eval_samples)
        for seed in args.seeds:
            # the anchor keeps its dense baseline, warm model and sensitivity for every other run
            anchor = args.workdir / f"{name}_sensitivity_b{args.budgets[0]}_s{seed}"
            combos = [("sensitivity", args.budgets[0])] + [(m, b) for b in args.budgets for m in args.methods
                                                          if (m, b) != ("sensitivity", args.budgets[0])]
            for i, (method, budget) in enumerate(combos):
                dst = _result_path(name, method, budget, seed)
                if dst.exists():
                    done = json.loads(dst.read_text())
                    if done.get("sweep_settings") != settings:
                        raise SystemExit(f"{dst} was made with {done.get('sweep_settings')}, not {settings}: "
                                         "use the same flags or move results/sweep aside")
                    continue
                print(f"[sweep] {name} seed {seed}: {i + 1}/{len(combos)} {method} @ {budget}", flush=True)
                is_anchor = (method, budget) == ("sensitivity", args.budgets[0])
                result = run_one(name, method, budget, seed, args.workdir, None if is_anchor else anchor, settings)
                report = {**result.report, "sweep_settings": settings, "run_folder": str(result.output)}
                dst.write_text(json.dumps(report, indent=2) + "\n")


def measure_latency(args) -> None:
    """int8 export + one interleaved bench per task, for the first seed's models."""
    from sensi_edge.bench import BenchConfig, bench
    from sensi_edge.export import ExportConfig, export

    seed = args.seeds[0]
    for name in args.tasks:
        dst = OUT / f"latency_{name}.json"
        runs = sorted(OUT.glob(f"{name}_*_s{seed}.json"))
        if not runs:
            continue
        reports = [json.loads(f.read_text()) for f in runs]
        if dst.exists() and not _unmeasured(reports, json.loads(dst.read_text())["results"]):
            continue  # a bench taken before every run existed is redone (the exports are kept)
        start = time.perf_counter()
        anchor = Path(json.loads(_result_path(name, "sensitivity", args.budgets[0], seed).read_text())["run_folder"])
        targets = {"dense": anchor / "dense_model"}
        targets.update({f"{r['method']}@{r['budget']['value']}": Path(r["run_folder"]) / "model" for r in reports})
        onnx_files, int8_metric = {}, {}
        for label, model_dir in targets.items():
            out = model_dir.parent / f"{model_dir.parent.name}-{model_dir.name}-onnx"
            if not (out / "export_report.json").exists():
                print(f"[sweep] {name}: int8 export of {label}", flush=True)
                export(ExportConfig(model_dir, out, quantize=("dynamic",), task=reports[0]["task"]["name"], data=reports[0]["data"],
                                    max_metric_drop=100.0), log=lambda m: None)  # the gate's verdict is recorded, not enforced
            rep = json.loads((out / "export_report.json").read_text())
            v = next(v for v in rep["variants"] if v["name"] == "int8-dynamic")
            onnx_files[label] = out / v["file"]
            int8_metric[label] = v["metrics"][rep["metric"]]
        report = bench(BenchConfig(models=tuple(onnx_files.values()), baseline=anchor / "dense_model", auto_baseline=False,
                                   threads=(1,), min_seconds=args.latency_seconds, ceiling_seconds=1.0))
        by_path = {str(p): label for label, p in onnx_files.items()}
        for r in report["results"]:
            r["label"] = "dense-pytorch-fp32" if r["is_baseline"] else by_path[r["path"]]
            r["int8_metric"] = None if r["is_baseline"] else int8_metric[r["label"]]
            r["metric"] = None  # bench's own guess (from report files) is not used here
        report["seed"] = seed
        report["wall_seconds_exports_and_bench"] = round(time.perf_counter() - start, 1)
        report["command"] = _command(name, args.seeds, reports[0]["sweep_settings"]) + f" --latency-seconds {args.latency_seconds:g}"
        dst.write_text(json.dumps(report, indent=2) + "\n")


def _command(name: str, seeds, settings: dict) -> str:
    """The sweep command that reproduces a task's runs (the size flags spelt out, even where RUNS agrees)."""
    return f"python -m benchmarks.sweep_methods --tasks {name} --seeds {' '.join(map(str, seeds))}" + "".join(
        f" --{k.replace('_', '-')} {v if isinstance(v, int) else format(v, 'g')}" for k, v in settings.items()
        if k in ("max_train_samples", "epochs", "warmup_fraction", "max_eval_samples"))


def _unmeasured(reports: list[dict], latency_rows: list[dict]) -> list[str]:
    """Labels of the seed's models (and the dense one) that a latency bench has no row for."""
    have = {r.get("label") for r in latency_rows}
    return sorted(({"dense"} | {f"{r['method']}@{r['budget']['value']}" for r in reports}) - have)


def _spread(sp: float, n: int) -> str:
    return f" +- {sp:.2f}" if n > 1 else " (1 seed)"  # one seed has no spread; 0.00 would claim one


def _mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def collect() -> dict:
    """task -> {"dense": [...], (method, budget): [reports...], "latency": {label: row}}"""
    tasks: dict = {}
    for f in sorted(OUT.glob("*_s*.json")):
        if f.name.startswith("latency_"):
            continue
        r = json.loads(f.read_text())
        t = tasks.setdefault(Path(r["data"]).name, {"runs": {}, "dense": {}, "latency": {}, "settings": r["sweep_settings"]})
        t["runs"].setdefault((r["method"], r["budget"]["value"]), []).append(r)
        seed = r["recipe"]["seed"]
        t["dense"][seed] = r["dense_baseline"][r["metric"]]
    for f in sorted(OUT.glob("latency_*.json")):
        rep = json.loads(f.read_text())
        name = f.stem[len("latency_"):]
        if name in tasks:
            tasks[name]["latency"] = {r["label"]: r for r in rep["results"]}
            tasks[name]["latency_report"] = rep
    return tasks


def summary() -> None:
    tasks = collect()
    lines = ["# Sweep: Sensi-BERT vs the comparison methods (MiniLM, budgets of encoder parameters)", "",
             "Generated by `python -m benchmarks.sweep_methods` (the exact flags are under each task). Metric: validation",
             "accuracy in % (SQuAD: F1 in %), mean +- population std over seeds (with 2 seeds that is half their difference). Every",
             "method runs through the same pipeline: same training rows, recipe, seed, physical removal and parameter",
             "accounting (encoder parameters from the saved tensors). `fisher-mask` is retraining-free (Kwon et al.",
             "2022 style: Fisher-based global selection on the fine-tuned dense model, no fine-tuning after the mask);",
             "`truncate` keeps the bottom k layers (k matched to the budget) and fine-tunes them. int8 latency: dynamic",
             "int8 ONNX of the first seed's model, median of interleaved runs, 1 thread, batch 1, seq 128 (SQuAD: 384), this",
             "2-core machine; 'x' = speed-up over the dense fine-tuned PyTorch fp32 model in the same bench run.",
             "all-MiniLM-L6-v2 was contrastively trained on SNLI/MNLI/QQP pairs: its snli numbers are optimistic.",
             "Steps: the dense baseline gets the recipe; every trained method (all but fisher-mask) starts from the",
             "warm model (the warm-up fraction of the recipe's steps) and then gets the whole recipe, so it has seen",
             "(1 + warm-up fraction) x the dense model's steps. In a low-data recipe that alone can put it above dense.", ""]
    total_compute = 0.0
    for name, t in tasks.items():
        s = t["settings"]
        runs = t["runs"]
        seeds = sorted(t["dense"])
        anchors = runs.get(("sensitivity", min(b for _, b in runs)), [])
        compute = sum(r["wall_seconds"]["total"] for rs in runs.values() for r in rs)
        lat_report = t.get("latency_report", {})
        lat_time = lat_report.get("wall_seconds_exports_and_bench", 0.0)
        total_compute += compute + lat_time
        sens_cost = [r["wall_seconds"].get("warmup", 0) + r["wall_seconds"].get("sensitivity", 0) for r in anchors]
        first = next(iter(runs.values()))[0]
        metric = first["metric"]
        seq = lat_report.get("settings", {}).get("seq_len")
        dm, ds = _mean_spread([t["dense"][k] for k in seeds])
        lat = t["latency"]
        lat_seed = lat_report.get("seed", seeds[0])
        base_ms = lat.get("dense-pytorch-fp32", {}).get("median_ms")

        def lat_cell(label):
            row = lat.get(label)
            if not row:
                return "-", "-"
            speed = f" ({base_ms / row['median_ms']:.1f}x)" if base_ms else ""
            return f"{row['median_ms']:.2f}{speed}", (f"{row['int8_metric']:.2f}" if row.get("int8_metric") is not None else "-")

        lines += [f"## {name} ({first['task']['name']})", "",
                  f"`{_command(name, seeds, s)}`  ",
                  f"{first['rows']['train']:,} train rows, {first['recipe']['epochs']:g} epochs, lr {first['recipe']['learning_rate']:g}, "
                  f"batch {first['recipe']['batch_size']}, seeds {seeds}, {first['rows']['validation']:,} validation rows; "
                  f"settings (from benchmarks.compress_tasks.RUNS + flags): `{json.dumps(s, sort_keys=True)}`.  ",
                  f"Sensitivity analysis (warm-up + probes), run once per seed and reused for every budget: "
                  f"{statistics.mean(sens_cost):.0f} s per seed." if sens_cost else "",
                  f"Compute: {compute / 60:.1f} min of compress runs + {lat_time / 60:.1f} min of int8 exports and latency.", "",
                  *_gaps(runs, lat, lat_seed, _command(name, GRID_SEEDS, s)),
                  f"| budget | method | encoder params kept | {metric} | vs dense | int8 ms{f' @ seq {seq}' if seq else ''}, seed {lat_seed}"
                  f" (speed-up) | int8 {metric}, seed {lat_seed} |",
                  "|---|---|---|---|---|---|---|"]
        dl, dacc = lat_cell("dense")
        lines.append(f"| 1.0 | dense (fine-tuned) | 100% | {dm:.2f}{_spread(ds, len(seeds))} | - | {dl} | {dacc} |")
        verdicts = []
        for budget in sorted({b for _, b in runs}):
            cells = []
            for method in METHODS:
                rs = runs.get((method, budget))
                if not rs:
                    continue
                m, sp = _mean_spread([r["compressed"][r["metric"]] for r in rs])
                kept = statistics.mean(r["params"]["encoder_ratio"] for r in rs)
                cells.append((m, method, sp, kept, len(rs)))
            best = max(c[0] for c in cells)
            for m, method, sp, kept, n in cells:
                ms, acc8 = lat_cell(f"{method}@{budget}")
                mark = "**" if m == best else ""
                lines.append(f"| {budget} | {method}{'' if n == len(seeds) else f' ({n} seeds)'} | {kept:.1%} | "
                             f"{mark}{m:.2f}{_spread(sp, n)}{mark} | {m - dm:+.2f} | {ms} | {acc8} |")
            ranked = sorted(cells, key=lambda c: -c[0])
            pos = next((i for i, c in enumerate(ranked) if c[1] == "sensitivity"), None)
            if pos is not None:
                verdicts.append(f"budget {budget}: best {ranked[0][1]} ({ranked[0][0]:.2f}); sensitivity ranks "
                                f"{pos + 1} of {len(ranked)} ({ranked[pos][0]:.2f}, {ranked[pos][0] - ranked[0][0]:+.2f} vs best)")
        majority = _majority_rate(first)
        collapsed = sorted(f"{m}@{b} seed {r['recipe']['seed']}" for (m, b), rs in runs.items() for r in rs
                           if majority is not None and r["compressed"][r["metric"]] <= majority + 0.5)
        lines += ["", "Where the sensitivity method stands: " + "; ".join(verdicts) + ".", ""]
        if majority is not None:
            lines += [f"Majority-class accuracy of this validation split: {majority:.2f}. Runs at or within 0.5 of it "
                      f"learnt nothing usable: {', '.join(collapsed) if collapsed else 'none'}.", ""]
        lines += _reference_line(name, first, dm, majority, bool(lat))
        lines += [

                  f"![Pareto plots for {name}]({OUT.name}_{name}.png)", ""]
        _plot(name, t, dm, ds, metric, seq)
    lines += [f"Total compute of this page: {total_compute / 3600:.2f} h on this machine.", ""]
    PAGE.write_text("\n".join(lines))


def _gaps(runs: dict, lat: dict, lat_seed: int, command: str) -> list[str]:
    """A line naming what the full grid still lacks, so a partial task is never read as finished."""
    have = sum(len({r["recipe"]["seed"] for r in runs.get((m, b), []) if r["recipe"]["seed"] in GRID_SEEDS})
               for m in METHODS for b in GRID_BUDGETS)
    want = len(METHODS) * len(GRID_BUDGETS) * len(GRID_SEEDS)
    grid = (f"{len(METHODS)} methods x budgets {'/'.join(map(str, GRID_BUDGETS))} x seeds "
            f"{'/'.join(map(str, GRID_SEEDS))}")
    unmeasured = _unmeasured([r for rs in runs.values() for r in rs if r["recipe"]["seed"] == lat_seed], list(lat.values()))
    missing = ([f"{want - have} of the {want} runs of the full grid ({grid})"] if have < want else []) + (
        [] if not unmeasured else ["the int8 latency bench"] if not lat else
        [f"the int8 latency of {len(unmeasured)} seed-{lat_seed} models ({', '.join(unmeasured)})"])
    return [f"**Incomplete**: missing {' and '.join(missing)}; `{command}` resumes it.", ""] if missing else []


def _reference_line(name: str, first: dict, sweep_dense: float, chance: float | None, has_latency: bool) -> list[str]:
    """How far the sweep's short recipe gets against the task's full compress run, where one exists.

    A dense model far below what the full recipe reaches has barely learnt the task, and then the
    method differences measure noise in early training, not the methods; the page must say so.
    Measured above chance (the majority class), so a classifier that learnt nothing reads as 0%.
    """
    path = OUT.parent / f"compress_{name}.json"
    if not path.exists():
        return []
    ref = json.loads(path.read_text())
    metric = first["metric"]
    same = (ref.get("metric") == metric and ref["task"]["name"] == first["task"]["name"]
            and ref["rows"]["validation"] == first["rows"]["validation"])
    if not same:  # another task preset or validation subset: not comparable
        return []
    full, floor = ref["dense_baseline"][metric], chance or 0.0
    share = (sweep_dense - floor) / (full - floor) if full > floor else float("nan")
    line = (f"Reference: the dense model of the task's full compress run ({ref['rows']['train']:,} train rows, "
            f"{ref['recipe']['epochs']:g} epochs, lr {ref['recipe']['learning_rate']:g}; {path.name}) reaches "
            f"{metric} {full:.2f}; this sweep's dense model {sweep_dense:.2f}, {share:.0%} of the way "
            f"{f'from the majority class ({floor:.2f})' if chance is not None else 'from 0'} to it.")
    if share < 0.5:
        line += (" Below half of that the dense model has barely learnt the task: differences between methods "
                 "here are weak evidence for or against any method"
                 + ("; the latency columns are unaffected." if has_latency else "."))
    return [line, ""]


def _majority_rate(report: dict) -> float | None:
    """Accuracy of always answering the most frequent validation label (None for QA)."""
    if report["task"].get("kind") == "qa":
        return None
    from collections import Counter

    from sensi_edge.data import load_task_data
    from sensi_edge.tasks import get_task

    t = report["task"]
    task = get_task(t["name"], t.get("text_columns") or None, t.get("label_column"), t.get("num_labels"))
    _, val, task = load_task_data(report["data"], task)
    counts = Counter(val[task.label_column])
    return 100.0 * max(counts.values()) / sum(counts.values())


def _plot(name: str, t: dict, dense_mean: float, dense_spread: float, metric: str, seq: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, lat = t["runs"], t["latency"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    markers = dict(zip(METHODS, "o^sDvP"))
    for method in METHODS:
        pts = sorted((b, rs) for (m, b), rs in runs.items() if m == method)
        if not pts:
            continue
        xs = [100 * statistics.mean(r["params"]["encoder_ratio"] for r in rs) for _, rs in pts]
        ys = [_mean_spread([r["compressed"][r["metric"]] for r in rs]) for _, rs in pts]
        axes[0].errorbar(xs, [y[0] for y in ys], yerr=[y[1] for y in ys], marker=markers[method], capsize=3, label=method)
        lx = [(lat[f"{method}@{b}"]["median_ms"], y) for (b, _), y in zip(pts, ys) if f"{method}@{b}" in lat]
        if lx:
            axes[1].errorbar([p[0] for p in lx], [p[1][0] for p in lx], yerr=[p[1][1] for p in lx],
                             marker=markers[method], capsize=3, label=method)
    axes[0].errorbar([100], [dense_mean], yerr=[dense_spread], marker="*", markersize=12, color="k", label="dense")
    if "dense" in lat:
        axes[1].errorbar([lat["dense"]["median_ms"]], [dense_mean], yerr=[dense_spread], marker="*", markersize=12,
                         color="k", label="dense (int8)")
    axes[0].set_xlabel("encoder parameters kept (%)")
    axes[1].set_xlabel(f"int8 ONNX latency, median ms (1 thread, seq {seq})" if seq else "int8 latency: not measured yet")
    for ax in axes:
        ax.set_ylabel(f"validation {metric} (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{name}: metric vs size and vs measured int8 latency (mean +- std over seeds)")
    fig.tight_layout()
    fig.savefig(PAGE.parent / f"{OUT.name}_{name}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["rt-polarity", "qnli-squad", "snli"], choices=list(RUNS))
    ap.add_argument("--budgets", nargs="+", type=float, default=list(GRID_BUDGETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(GRID_SEEDS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--max-train-samples", type=int, default=None, help="override the task's training rows")
    ap.add_argument("--epochs", type=float, default=None, help="override the task's epochs")
    ap.add_argument("--warmup-fraction", type=float, default=None,
                    help="override the warm-up before sensitivity (a short recipe needs a larger fraction)")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="only for smoke tests: fewer validation rows")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "sweep", help="where the per-run JSON files go; the page and plots "
                    "are written beside that folder")
    ap.add_argument("--latency-seconds", type=float, default=3.0, help="minimum timing per int8 model")
    ap.add_argument("--no-latency", action="store_true", help="skip the int8 exports and the latency bench")
    ap.add_argument("--workdir", type=Path, default=ROOT.parent / "runs" / "sweep")
    ap.add_argument("--summary", action="store_true", help="only rebuild results/sweep.md and the plots")
    args = ap.parse_args()
    global OUT, PAGE
    OUT, PAGE = args.results, args.results.parent / f"{args.results.name}.md"
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        train_all(args)
        if not args.no_latency:
            measure_latency(args)
    summary()
    print(PAGE.read_text())


if __name__ == "__main__":
    main()
