"""Which dynamic-int8 settings keep accuracy: the compressed rt-polarity model, full validation split.

    python -m benchmarks.int8_settings [--onnx runs/rt-polarity-b0.5-onnx]

Quantizes the fused fp32 graph of an export (benchmarks.export_minilm) with each setting and
scores it with `evaluate`'s code path; the PyTorch model's accuracy is in that export's report.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from sensi_edge.quantize import PRESETS, QuantPreset, cpu_info_flags, quantize_dynamic_int8
from sensi_edge.tasks.scoring import evaluate_path

ROOT = Path(__file__).resolve().parent
SETTINGS = {
    "qint8 per-channel (vnni preset)": QuantPreset("vnni"),
    "qint8 per-channel reduce_range (avx2 preset)": PRESETS["avx2"],
    "qint8 per-tensor": QuantPreset("t", per_channel=False),
    "quint8 per-channel": QuantPreset("u", weight_type="quint8"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, default=ROOT.parent / "runs" / "rt-polarity-b0.5-onnx")
    args = ap.parse_args()
    rep = json.loads((args.onnx / "export_report.json").read_text())
    rows = []
    for name, preset in SETTINGS.items():
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            for f in args.onnx.iterdir():
                if f.is_file() and not f.suffix == ".onnx":
                    shutil.copy(f, d)
            quantize_dynamic_int8(args.onnx / "model.onnx", d / "model.onnx", preset)
            r = evaluate_path(d / "model.onnx", rep["task"]["name"], rep["data"], threads=1)
            rows.append((name, r["metrics"][rep["metric"]], (d / "model.onnx").stat().st_size))
    lines = [f"# Dynamic int8 settings on the compressed rt-polarity model ({rep['validation_rows']} validation rows)", "",
             f"`python -m benchmarks.int8_settings`; CPU flags: {', '.join(sorted(cpu_info_flags()))}; "
             f"PyTorch accuracy {rep['pytorch_metrics'][rep['metric']]:.2f}.", "",
             f"| setting | {rep['metric']} | drop vs PyTorch | MB |", "|---|---|---|---|"]
    for name, value, size in rows:
        lines.append(f"| {name} | {value:.2f} | {rep['pytorch_metrics'][rep['metric']] - value:+.2f} | {size / 1e6:.2f} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "results" / "int8_settings.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
