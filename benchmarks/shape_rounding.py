"""Do ONNX Runtime's int8 kernels prefer FFN widths that are multiples of 8 / 16 / 32 / 64?

    python -m benchmarks.shape_rounding [--widths 736 768] [--threads 1] [--seconds 2]

MiniLM-shaped models (6 layers, hidden 384, 12 heads; random weights, 2,100-token vocabulary) with every
layer's FFN width set to w, for every w in the range (heads stay 12: their width, 32 per head, is already
a multiple of 32). Each is exported like ``export`` (fused, int8 dynamic) and all are timed interleaved
(batch 1, 128 tokens). If widths that are multiples of some k run faster than the linear trend of their
neighbours, rounding the kept FFN neurons per layer to k pays; if the residuals do not depend on w mod k,
it does not. Results: results/shape_rounding.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from sensi_edge import bundle_runtime as rt

ROOT = Path(__file__).resolve().parent


def build(folder: Path, widths: list[int]) -> list[Path]:
    import torch

    from sensi_edge.loading import default_model_path, load_config
    from sensi_edge.modeling import SensiBertConfig, SensiBertForSequenceClassification
    from sensi_edge.onnx_graph import export_model, fuse
    from sensi_edge.quantize import detect_preset, quantize_dynamic_int8

    base = load_config(default_model_path())
    paths = []
    for w in widths:
        cfg = SensiBertConfig(**{**base.to_dict(), "vocab_size": 2100, "num_labels": 2,
                                 "layer_intermediate_sizes": [w] * base.num_hidden_layers})
        torch.manual_seed(w)
        model = SensiBertForSequenceClassification(cfg).eval()
        export_model(model, folder / "u.onnx")
        fuse(folder / "u.onnx", folder / "f.onnx")
        quantize_dynamic_int8(folder / "f.onnx", folder / f"w{w}.onnx", detect_preset())
        paths.append(folder / f"w{w}.onnx")
        print(f"built FFN width {w}", flush=True)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs=2, default=[736, 768], help="first and last width (inclusive)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    widths = list(range(args.widths[0], args.widths[1] + 1))
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(Path(tmp), widths)
        fns = {str(w): rt.ort_callable(rt.ort_session(p, args.threads)) for w, p in zip(widths, paths)}
        samples = rt.interleaved(fns, rt.random_inputs(1, 128, seed=3), 10, 100, args.seconds)
    med = np.array([rt.percentiles(samples[str(w)])["median_ms"] for w in widths])
    trend = np.polyval(np.polyfit(widths, med, 1), widths)
    resid = (med - trend) / trend
    by_k = {}
    for k in (8, 16, 32, 64):
        on = [r for w, r in zip(widths, resid) if w % k == 0]
        off = [r for w, r in zip(widths, resid) if w % k != 0]
        by_k[k] = {"multiples": len(on), "mean_residual_multiples": float(np.mean(on)) if on else None,
                   "mean_residual_others": float(np.mean(off)) if off else None}
    out = {"threads": args.threads, "seq_len": 128, "environment": rt.environment(),
           "widths": widths, "median_ms": med.tolist(), "residual_vs_linear_trend": resid.tolist(), "by_multiple": by_k}
    (ROOT / "results" / "shape_rounding.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# FFN width vs int8 latency ({out['environment']['cpu']['model']}, {args.threads} thread, 128 tokens)", "",
             f"`python -m benchmarks.shape_rounding --widths {widths[0]} {widths[-1]} --threads {args.threads}` (module "
             "docstring: setup). Residual = median latency vs the linear trend over all widths.", "",
             "| multiple of | widths | mean residual of the multiples | mean residual of the others |", "|---|---|---|---|"]
    for k, v in by_k.items():
        lines.append(f"| {k} | {v['multiples']} | {v['mean_residual_multiples']:+.2%} | {v['mean_residual_others']:+.2%} |")
    lines += ["", "| FFN width | median ms | residual |", "|---|---|---|"]
    lines += [f"| {w} | {m:.3f} | {r:+.2%} |" for w, m, r in zip(widths, med, resid)]
    (ROOT / "results" / "shape_rounding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


if __name__ == "__main__":
    main()
