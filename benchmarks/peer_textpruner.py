"""Peer library row for the accuracy page: TextPruner (PyPI ``textpruner``), run through its own API.

    python -m benchmarks.peer_textpruner --task rt-polarity [--seeds 1 2 3] [--budgets 0.5 0.3]

For each seed it takes the very dense model that ``benchmarks.accuracy_at_budget`` fine-tuned for that
seed (its ``default`` anchor run, kept with --keep-intermediate), prunes it with TextPruner's
``TransformerPruner`` (training-free, iterative, global ranking of heads and FFN neurons across
layers: ``head_even_masking=False, ffn_even_masking=False``) to the same encoder-parameter budget,
using the same 1,024 held-out calibration rows, and scores it on the same validation rows. The
per-layer average sizes TextPruner takes are the largest that fit the budget with our accounting
(heads = floor(budget x 12), then as many neurons as fit).

TextPruner 1.1 declares numpy < 1.22, which this project's environment cannot satisfy; it works
with ``--no-deps``. So, when it is not importable, this script makes ``runs/textpruner-venv``
(a venv that sees this environment's packages through a .pth file, plus ``textpruner`` installed
with --no-deps) and re-runs itself there. Results: results/accuracy/<task>_textpruner_b<budget>_s<seed>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT.parent / "runs" / "textpruner-venv"
TEXTPRUNER = "textpruner==1.1.post2"


def _ensure_textpruner() -> None:
    try:
        import textpruner  # noqa: F401
        return
    except ImportError:
        pass
    py = VENV / "bin" / "python"
    # sys.prefix, not the interpreter: both venvs' bin/python resolve to the same base python, so comparing
    # resolved executables refused to re-run in an existing venv (every run after the one that made it)
    if Path(sys.prefix).resolve() == VENV.resolve():
        raise SystemExit(f"textpruner is not importable even in {VENV}; delete that folder and rerun")
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        Path(site, "sensi-edge-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n" + str(ROOT.parent) + "\n")
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", TEXTPRUNER], check=True)
    os.execv(str(py), [str(py), "-m", "benchmarks.peer_textpruner", *sys.argv[1:]])


def _sizes(budget: float) -> tuple[int, int]:
    """(heads per layer, FFN neurons per layer) for TextPruner: the largest that fit the budget."""
    from sensi_edge.cost import Geometry, encoder_params, head_params, layer_fixed_params, neuron_params
    from sensi_edge.planner import Budget

    g = Geometry(384, 32, (12,) * 6, (1536,) * 6)
    per_layer = Budget("params", budget).target(g) / g.num_layers
    h = int(budget * 12)
    f = int((per_layer - layer_fixed_params(g) - h * head_params(g)) // neuron_params(g))
    assert encoder_params(g.with_sizes([h] * 6, [f] * 6)) <= Budget("params", budget).target(g)
    return h, f


def _anchor(task_name: str, seed: int) -> tuple[dict, Path]:
    """The seed's run whose folder still holds the fine-tuned dense model, and that run's report.

    Any run of accuracy_at_budget that trims from the dense model keeps it when it was its seed's first (the
    anchor): the ``default`` run normally, but when the default results are committed from another machine
    and their folders are gone, the first variant run of a later sweep (``kwon``, ``uniform``...) fine-tunes
    the dense model again and keeps it. The report returned is the one whose folder holds the model, so the
    row's dense baseline is the model TextPruner pruned (a fine-tune on another CPU is not bit-identical)."""
    from .accuracy_at_budget import RESULTS, runs_of_seed

    for _variant, _budget, path in runs_of_seed(RESULTS[0], task_name, seed, ".json"):
        anchor = json.loads(path.read_text())
        dense_dir = Path(anchor["run_folder"]) / "dense_model"
        if (dense_dir / "config.json").exists():
            return anchor, dense_dir
    raise SystemExit(f"error: no kept dense model for {task_name} seed {seed}; "
                     "run benchmarks.accuracy_at_budget for that seed first (its first run keeps one)")


def run(task_name: str, seed: int, budget: float) -> dict:
    import torch
    from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig
    from transformers import AutoTokenizer

    from sensi_edge.data import load_task_data
    from sensi_edge.loading import load_for_task
    from sensi_edge.runners import TorchRunner
    from sensi_edge.tasks import get_task
    from sensi_edge.tasks.evaluators import evaluator_for
    from sensi_edge.tasks.tokenise import batches

    from .accuracy_at_budget import OUT, SHARED

    anchor, dense_dir = _anchor(task_name, seed)
    task = get_task(anchor["task"]["name"])
    train, val, task = load_task_data(str(SHARED / task_name), task)
    tok = AutoTokenizer.from_pretrained(str(dense_dir))
    ev = evaluator_for(task, tok, anchor["flops"]["seq_len"], 128)
    n_calib = anchor["rows"]["calibration_held_out"]
    calib_rows = train.shuffle(seed=seed).select(range(n_calib))  # the rows compress held out for this seed
    calib = batches(ev.train_features(calib_rows), tok, 32)
    val_prep = ev.prepare(val)
    _, model = load_for_task(str(dense_dir), task)
    heads, ffn = _sizes(budget)
    start = time.perf_counter()
    torch.manual_seed(seed)
    out_dir = OUT.parent.parent.parent / "runs" / "textpruner" / f"{task_name}_b{budget}_s{seed}"
    pruner = TransformerPruner(model, TransformerPruningConfig(
        target_ffn_size=ffn, target_num_of_heads=heads, pruning_method="iterative", n_iters=4,
        head_even_masking=False, ffn_even_masking=False), GeneralConfig(use_device="cpu", output_dir=str(out_dir)))
    pruner.prune(dataloader=calib, save_model=False)
    seconds = time.perf_counter() - start
    model.eval()
    metrics = ev.score(TorchRunner(model), val_prep).metrics
    enc = sum(p.numel() for p in model.bert.encoder.parameters())
    heads_per_layer = [int(x) for x in pruner.head_mask.sum(-1).tolist()]
    ffn_per_layer = [int(x) for x in pruner.ffn_mask.sum(-1).tolist()]
    return {
        "variant": "textpruner", "task": anchor["task"], "data": anchor["data"], "metric": anchor["metric"],
        "model": str(dense_dir), "budget": {"kind": "params", "value": budget, "absolute": False},
        "recipe": {"seed": seed}, "dense_baseline": anchor["dense_baseline"], "compressed": metrics,
        "params": {"encoder_before": anchor["params"]["encoder_before"], "encoder_after_saved": enc,
                   "encoder_ratio": enc / anchor["params"]["encoder_before"]},
        "plan": {"heads_per_layer": heads_per_layer, "ffn_per_layer": ffn_per_layer,
                 "dense_heads": anchor["plan"]["dense_heads"], "dense_ffn": anchor["plan"]["dense_ffn"]},
        "textpruner": {"version": TEXTPRUNER, "target_num_of_heads": heads, "target_ffn_size": ffn, "n_iters": 4,
                       "pruning_method": "iterative", "head_even_masking": False, "ffn_even_masking": False,
                       "calibration_rows": n_calib},
        "wall_seconds": {"total": round(seconds, 1)},
        "command": f"python -m benchmarks.peer_textpruner --task {task_name} --seeds {seed} --budgets {budget}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="rt-polarity")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.3])
    args = ap.parse_args()
    _ensure_textpruner()
    from .accuracy_at_budget import _result, summary

    for seed in args.seeds:
        for budget in args.budgets:
            dst = _result(args.task, "textpruner", budget, seed)
            if dst.exists():
                continue
            print(f"[textpruner] {args.task} seed {seed} @ {budget}", flush=True)
            dst.write_text(json.dumps(run(args.task, seed, budget), indent=2) + "\n")
            summary()


if __name__ == "__main__":
    main()
