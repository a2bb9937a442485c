"""The ONNX graphs sensi-edge exports on its two transformers lines (4.57 and 5.x), side by side.

    .venv/bin/python    -m benchmarks.transformers_lines --export runs/lines/4.57
    .venv-t5/bin/python -m benchmarks.transformers_lines --export runs/lines/5.x
    .venv/bin/python    -m benchmarks.transformers_lines --compare runs/lines/4.57 runs/lines/5.x

Why: transformers 5 traces attention differently (SDPA decomposed, reshapes to ``(..., -1, head_dim)``), and
until export switched to eager attention and named the head counts (onnx_graph._eager_attention,
name_head_counts) onnxruntime fused no attention layer there. This shows, for MiniLM dense and for a trimmed
MiniLM with irregular layers (one with no heads), that both lines now give the same fused ops, the same outputs
(same weights, seed 0) and the same speed: fp32 fused and int8 dynamic, batch 1, seq 128, 1 thread,
interleaved in one process. Writes results/transformers_lines.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PAGE, JSON = ROOT / "results" / "transformers_lines.md", ROOT / "results" / "transformers_lines.json"
HEADS = [8, 3, 6, 0, 5, 12]  # kept heads per layer of the trimmed model (of 12); layer 3 keeps none
FFN = [1536, 700, 300, 900, 0, 1200]  # kept FFN neurons per layer (of 1536); layer 4 keeps none


def _models():
    import torch
    from transformers import BertForSequenceClassification

    from sensi_edge.artifacts import TrimPlan
    from sensi_edge.arch import adapter_for
    from sensi_edge.loading import default_model_path
    from sensi_edge.surgery import apply_plan

    torch.manual_seed(0)
    dense = BertForSequenceClassification.from_pretrained(default_model_path(), num_labels=2).eval()
    g = adapter_for(dense).geometry(dense)
    plan = TrimPlan(g, tuple(tuple(range(h)) for h in HEADS), tuple(tuple(range(f)) for f in FFN), {"kind": "params"})
    return {"dense": dense, "trimmed": apply_plan(dense, plan).eval()}


def export(out: Path) -> None:
    """Fused fp32 and int8 dynamic graphs of both models, and what the exporting environment was."""
    import torch
    import transformers

    from sensi_edge.onnx_graph import export_model, fuse
    from sensi_edge.quantize import detect_preset, quantize_dynamic_int8

    out.mkdir(parents=True, exist_ok=True)
    for name, model in _models().items():
        export_model(model, out / f"{name}_unfused.onnx")
        fuse(out / f"{name}_unfused.onnx", out / f"{name}.onnx")
        quantize_dynamic_int8(out / f"{name}.onnx", out / f"{name}_int8.onnx", detect_preset())
        (out / f"{name}_unfused.onnx").unlink()
    (out / "versions.json").write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__}))
    print(f"wrote {out}")


def compare(a: Path, b: Path, seconds: float) -> dict:
    """Op counts, output agreement and interleaved latency of each graph pair (one process, 1 thread)."""
    import numpy as np

    from sensi_edge import bundle_runtime as rt
    from sensi_edge.onnx_graph import attention_heads, op_counts

    lines = {p: json.loads((p / "versions.json").read_text())["transformers"] for p in (a, b)}
    if len(set(lines.values())) < 2:
        raise SystemExit(f"error: both folders were exported with transformers {lines[a]}; export one under each "
                         "line (.venv and .venv-t5)")
    feed = rt.random_inputs(1, 128, seed=1)
    padded = rt.random_inputs(4, 64, seed=2)
    padded["attention_mask"][1, 40:] = 0
    padded["attention_mask"][3, 9:] = 0
    rows = []
    for name in ("dense", "dense_int8", "trimmed", "trimmed_int8"):
        paths = {lines[p]: p / f"{name}.onnx" for p in (a, b)}
        fns = {v: rt.ort_callable(rt.ort_session(path, 1)) for v, path in paths.items()}
        outs = [fn(padded)[0] for fn in fns.values()]
        samples = rt.interleaved(fns, feed, 10, 200, seconds)
        rows.append({"graph": name, "max_abs_diff_between_lines": float(np.abs(outs[0] - outs[1]).max()),
                     **{v: {"ops": op_counts(path), "attention_heads": attention_heads(path),
                            **rt.percentiles(samples[v])} for v, path in paths.items()}})
        print(name, {v: round(statistics.median(s), 3) for v, s in samples.items()}, flush=True)
    return {"lines": list(lines.values()), "threads": 1, "batch": 1, "seq_len": 128, "environment": rt.environment(),
            "rows": rows}


def render(r: dict) -> str:
    x, y = r["lines"]
    out = ["# The exported graph on both transformers lines (MiniLM, dense and trimmed)", "",
           "Commands: module docstring of `benchmarks/transformers_lines.py` (export under each venv, then compare in",
           f"one process). transformers {x} vs {y}; fp32 = fused graph, int8 = dynamic int8 of it. Latency: batch 1,",
           f"seq 128, {r['threads']} thread, the two lines interleaved; ms median (p90). Trimmed: heads {HEADS}, FFN {FFN}.",
           "'max diff' = largest |logit difference| between the two lines' graphs on 4 padded rows.", "",
           f"| graph | fused ops ({x}) | fused ops ({y}) | attention heads ({x} / {y}) | max diff | {x} ms | {y} ms |",
           "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        a, b = row[x], row[y]
        ops = lambda o: ", ".join(f"{k} {v}" for k, v in o.items() if k != "total_nodes") + f"; {o['total_nodes']} nodes"  # noqa: E731
        out.append(f"| {row['graph']} | {ops(a['ops'])} | {ops(b['ops'])} | {a['attention_heads']} / {b['attention_heads']} | "
                   f"{row['max_abs_diff_between_lines']:.1e} | {a['median_ms']:.2f} ({a['p90_ms']:.2f}) | "
                   f"{b['median_ms']:.2f} ({b['p90_ms']:.2f}) |")
    cpu = r["environment"].get("cpu", {})
    out += ["", f"CPU: {cpu.get('model', 'n/a')}; onnxruntime {r['environment']['versions']['onnxruntime']}.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="write this environment's graphs here")
    ap.add_argument("--compare", type=Path, nargs=2, help="two --export folders (one per transformers line)")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per variant and graph")
    args = ap.parse_args()
    if args.export:
        export(args.export)
    if args.compare:
        r = compare(*args.compare, seconds=args.seconds)
        JSON.write_text(json.dumps(r, indent=2) + "\n")
        PAGE.write_text(render(r))
        print(PAGE.read_text())


if __name__ == "__main__":
    main()
