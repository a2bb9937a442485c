"""Export + latency benchmark for a MiniLM model compressed by `compress` (budget 0.5).

    python -m benchmarks.export_minilm [--run runs/rt-polarity-b0.5]
    python -m benchmarks.export_minilm --run runs/squad-v1.1-dev-b0.5 --quantize dynamic

1. `export --onnx` of the compressed model with dynamic (and static) int8, verified on the full
   validation split of its task -> results/export_<data>.{json,md}.
2. The dense, uncompressed MiniLM exported the same way (fp32 + int8) for the size comparison.
   Its classifier head is untrained (only sizes and latency are used; the gate is off for it).
3. `bench` of everything against the dense fp32 PyTorch MiniLM (sequence length 128, 384 for QA)
   -> results/latency_minilm_<data>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from sensi_edge.bench import BenchConfig, bench, save
from sensi_edge.export import ExportConfig, export
from sensi_edge.loading import default_model_path

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT.parent / "runs" / "rt-polarity-b0.5", help="a compress output")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--export-only", action="store_true", help="prepare the ONNX files, measure nothing (latency wants a quiet machine)")
    ap.add_argument("--quantize", nargs="+", default=["dynamic", "static"])
    args = ap.parse_args()
    name = args.run.name.rsplit("-b", 1)[0]  # runs/<data>-b<budget>
    run_report = json.loads((args.run / "report.json").read_text())
    qa = run_report["task"].get("kind") == "qa"
    compressed_onnx = args.run.parent / f"{args.run.name}-onnx"
    dense_onnx = args.run.parent / ("minilm-dense-qa-onnx" if qa else "minilm-dense-onnx")
    if not (compressed_onnx / "export_report.json").exists():
        shutil.rmtree(compressed_onnx, ignore_errors=True)
        export(ExportConfig(args.run / "model", compressed_onnx, quantize=tuple(args.quantize)))
    if not (dense_onnx / "export_report.json").exists():
        shutil.rmtree(dense_onnx, ignore_errors=True)
        export(ExportConfig(Path(default_model_path()), dense_onnx, quantize=("dynamic",), task=run_report["task"]["name"],
                            data=run_report["data"], max_eval_samples=64, max_metric_drop=100.0))
    rep = json.loads((compressed_onnx / "export_report.json").read_text())
    dense = json.loads((dense_onnx / "export_report.json").read_text())
    dense_fp32 = next(v for v in dense["variants"] if v["name"] == "fp32")["size_bytes"]
    rep["dense_uncompressed_fp32_onnx_bytes"] = dense_fp32
    for v in rep["variants"]:
        v["smaller_than_dense_fp32_onnx"] = dense_fp32 / v["size_bytes"]
    rep["command"] = f"python -m benchmarks.export_minilm --run runs/{args.run.name}"
    out = ROOT / "results" / f"export_{name}.json"
    out.write_text(json.dumps(rep, indent=2) + "\n")
    from sensi_edge.export import render_markdown

    md = render_markdown(rep) + "\nDense uncompressed MiniLM fp32 ONNX (fused): " + f"{dense_fp32 / 1e6:.2f} MB; " + ", ".join(
        f"{v['name']} is {v['smaller_than_dense_fp32_onnx']:.2f}x smaller" for v in rep["variants"]) + "\n"
    out.with_suffix(".md").write_text(md)
    print(md)
    if args.export_only:
        return
    models = [args.run / "model"] + [compressed_onnx / v["file"] for v in rep["variants"]] + [
        dense_onnx / v["file"] for v in dense["variants"]]
    report = bench(BenchConfig(models=tuple(models), baseline=Path(default_model_path()), threads=tuple(args.threads),
                               min_seconds=args.seconds))
    for r in report["results"]:
        if Path(r["path"]).parent == dense_onnx:
            r["metric"] = None  # untrained classifier head: only size and latency are meaningful
    report["command"] = f"python -m benchmarks.export_minilm --run runs/{args.run.name}"
    save(report, ROOT / "results" / f"latency_minilm_{name}.json", overwrite=True)
    print((ROOT / "results" / f"latency_minilm_{name}.md").read_text())


if __name__ == "__main__":
    main()
