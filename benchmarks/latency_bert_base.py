"""Latency benchmark: bert-base-shaped model (random weights), dense vs 50% of heads and FFN neurons removed.

    python -m benchmarks.latency_bert_base [--threads 1 2] [--workdir runs]

Latency does not depend on weight values, so random weights stand in for bert-base-uncased
(12 layers, hidden 768, 12 heads, FFN 3072). The pruned model keeps 6 heads and 1536 neurons in
every layer (the first ones: which ones does not matter for speed). Both go through the real
export (optimum export, ORT fusion, dynamic int8 with this CPU's preset; parity checked against
PyTorch on 64 rt-polarity rows -- accuracy is meaningless with random weights, so the metric gate
is off) and then through `bench` with the dense fp32 PyTorch model as the baseline.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from sensi_edge.arch import adapter_for
from sensi_edge.artifacts import TrimPlan
from sensi_edge.bench import BenchConfig, bench, save
from sensi_edge.export import ExportConfig, export
from sensi_edge.loading import default_model_path
from sensi_edge.surgery import apply_plan

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"


def build(workdir: Path) -> dict[str, Path]:
    paths = {"dense": workdir / "dense", "pruned50": workdir / "pruned50"}
    if all((p / "config.json").exists() for p in paths.values()):
        return paths
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(default_model_path())  # same uncased 30522-token vocab as bert-base
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()
    g = adapter_for(model).geometry(model)
    plan = TrimPlan(g, tuple(tuple(range(6)) for _ in range(12)), tuple(tuple(range(1536)) for _ in range(12)),
                    {"kind": "params", "note": "50% of heads and FFN neurons in every layer"})
    for name, m in (("dense", model), ("pruned50", apply_plan(model, plan))):
        shutil.rmtree(paths[name], ignore_errors=True)
        m.save_pretrained(paths[name])
        tok.save_pretrained(paths[name])
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=ROOT.parent / "runs" / "bert-base-random")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--export-only", action="store_true", help="prepare the ONNX files, measure nothing (latency wants a quiet machine)")
    args = ap.parse_args()
    paths = build(args.workdir)
    onnx = {}
    for name, p in paths.items():
        out = args.workdir / f"{name}-onnx"
        if not (out / "export_report.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            export(ExportConfig(p, out, quantize=("dynamic",), task="sst2", data=str(SHARED / "rt-polarity"),
                                max_eval_samples=64, max_metric_drop=100.0))
        onnx[name] = out
    if args.export_only:
        return
    models = (paths["pruned50"], onnx["dense"] / "model.onnx", onnx["dense"] / "model_int8_dynamic.onnx",
              onnx["pruned50"] / "model.onnx", onnx["pruned50"] / "model_int8_dynamic.onnx")
    report = bench(BenchConfig(models=models, baseline=paths["dense"], threads=tuple(args.threads),
                               min_seconds=args.seconds))
    for r in report["results"]:
        r["metric"] = None  # random weights: the export's accuracy on 64 rows means nothing
    report["parity"] = {n: json.loads((o / "export_report.json").read_text())["graph_steps"] for n, o in onnx.items()}
    report["command"] = "python -m benchmarks.latency_bert_base"
    save(report, ROOT / "results" / "latency_bert_base.json", overwrite=True)
    print((ROOT / "results" / "latency_bert_base.md").read_text())


if __name__ == "__main__":
    main()
