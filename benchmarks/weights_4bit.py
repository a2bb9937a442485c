"""4-bit weights (ONNX Runtime's MatMulNBits) against the int8 export, on one compressed model.

    pip install onnx-ir            # the MatMulNBits quantizer needs it (extra: sensi-edge[int4])
    python -m benchmarks.weights_4bit --onnx runs/latency/rt-polarity_latency_s1-onnx [--threads 1 2]

From the export's fused fp32 graph (model.onnx) it makes 4-bit variants with
``MatMulNBitsQuantizer`` (symmetric, block 32 and 128, accuracy_level 4 = int8 compute on the
activations): every MatMul (FFN, attention output) gets 4-bit weights; the fused Attention op keeps its
fp32 QKV weights, as MatMulNBits only replaces MatMul. Each variant is scored on the full validation
split (`evaluate`'s code path) and timed against the int8 dynamic export in interleaved rounds at 128
tokens, batch 1. Results: results/weights_4bit.{json,md}. The decision (keep or not) is in the README.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from sensi_edge import bundle_runtime as rt
from sensi_edge.tasks.scoring import evaluate_path

ROOT = Path(__file__).resolve().parent
SETTINGS = {"int4 block 32": 32, "int4 block 128": 128}


def quantize_4bit(src: Path, dst: Path, block: int) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=block, is_symmetric=True, accuracy_level=4)
    q.process()
    q.model.save_model_to_file(str(dst), use_external_data_format=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, required=True, help="an export folder (model.onnx, model_int8_dynamic.onnx)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    rep = json.loads((args.onnx / "export_report.json").read_text())
    metric = rep["metric"]
    rows = {"int8 dynamic (export)": {"path": args.onnx / "model_int8_dynamic.onnx"},
            "fp32 fused (export)": {"path": args.onnx / "model.onnx"}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for f in args.onnx.iterdir():  # tokenizer and config beside the variants, as evaluate expects
            if f.is_file() and f.suffix != ".onnx":
                shutil.copy(f, tmp)
        for name, block in SETTINGS.items():
            dst = tmp / f"model_int4_b{block}.onnx"
            quantize_4bit(args.onnx / "model.onnx", dst, block)
            rows[name] = {"path": dst}
        for name, r in rows.items():
            ev = evaluate_path(r["path"], rep["task"]["name"], rep["data"], threads=1)
            r.update(metric=ev["metrics"][metric], size_mb=r["path"].stat().st_size / 1e6)
        feed = rt.random_inputs(1, 128, seed=1)
        for t in args.threads:
            fns = {n: rt.ort_callable(rt.ort_session(r["path"], t)) for n, r in rows.items()}
            samples = rt.interleaved(fns, feed, 10, 100, args.seconds)
            for n in rows:
                rows[n][f"t{t}"] = rt.percentiles(samples[n])
        for r in rows.values():
            r["path"] = r["path"].name
    out = {"export": str(args.onnx), "pytorch": rep["pytorch_metrics"][metric], "metric": metric,
           "environment": rt.environment(), "rows": rows, "threads": args.threads}
    (ROOT / "results" / "weights_4bit.json").write_text(json.dumps(out, indent=2) + "\n")
    base = rows["int8 dynamic (export)"]
    lines = [f"# 4-bit weights (MatMulNBits) vs int8 dynamic: {args.onnx.name}", "",
             f"`python -m benchmarks.weights_4bit --onnx {args.onnx}`; {out['environment']['cpu']['model']}; PyTorch "
             f"{metric} {out['pytorch']:.2f} on {rep['validation_rows']} validation rows; batch 1, 128 tokens, interleaved.", "",
             "| variant | " + metric + " | MB | " + " | ".join(f"median ms, {t} thr (vs int8)" for t in args.threads) + " |",
             "|---|---|---|" + "---|" * len(args.threads)]
    for n, r in rows.items():
        cells = " | ".join(f"{r[f't{t}']['median_ms']:.2f} ({base[f't{t}']['median_ms'] / r[f't{t}']['median_ms']:.2f}x)"
                           for t in args.threads)
        lines.append(f"| {n} | {r['metric']:.2f} | {r['size_mb']:.1f} | {cells} |")
    (ROOT / "results" / "weights_4bit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
