"""sensi-edge's exporter (torch.onnx.export) against optimum-onnx's on the same MiniLM classifier.

    python -m benchmarks.exporter_vs_optimum      (needs the optimum extra: the transformers 4.57 line)

Why: export left optimum for torch.onnx so that transformers 5 works; this shows the graphs match
(op counts before and after onnxruntime's fusion, outputs against PyTorch). Writes
results/exporter_vs_optimum.md."""
import tempfile
from pathlib import Path
import numpy as np, onnxruntime as rt, torch
from transformers import AutoTokenizer, BertForSequenceClassification
from optimum.exporters.onnx import export
from optimum.exporters.onnx.model_configs import BertOnnxConfig
from sensi_edge.loading import default_model_path
from sensi_edge.onnx_graph import export_model, fuse, op_counts
p = default_model_path()
torch.manual_seed(0)
m = BertForSequenceClassification.from_pretrained(p, num_labels=2).eval()
out = Path(tempfile.mkdtemp(prefix="exporters-"))
export_model(m, out / "ours.onnx")
export(m, BertOnnxConfig(m.config, task="text-classification"), out / "optimum.onnx", opset=17)
tok = AutoTokenizer.from_pretrained(p)
b = dict(tok(["a fine film", "the plot is thin and the acting worse than that"], padding=True, return_tensors="np"))
res, lines = {}, ["# sensi-edge exporter vs optimum-onnx (MiniLM, sequence classification, random head, seed 0)", "",
                  "`python -m benchmarks.exporter_vs_optimum`; two sentences, padded.", "",
                  "| graph | op counts | max abs diff vs PyTorch |", "|---|---|---|"]
counts = {}
for n in ("ours", "optimum"):
    fuse(out / f"{n}.onnx", out / f"{n}_fused.onnx")
    for v in (n, f"{n}_fused"):
        s = rt.InferenceSession(str(out / f"{v}.onnx"), providers=["CPUExecutionProvider"])
        res[v] = s.run(None, b)[0]
        counts[v] = op_counts(out / f"{v}.onnx")
with torch.no_grad():
    ref = m(**{k: torch.tensor(x) for k, x in b.items()}).logits.numpy()
for k, v in res.items():
    lines.append(f"| {k} | {counts[k]} | {float(np.abs(v - ref).max()):.2e} |")
page = Path(__file__).resolve().parent / "results" / "exporter_vs_optimum.md"
page.write_text("\n".join(lines) + "\n")
print(page.read_text())
