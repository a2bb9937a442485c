"""ONNX export and ORT transformer fusion, each step checked against PyTorch by the caller.

Export uses optimum's exporter with a BertOnnxConfig built directly from the model's config:
optimum's task manager and ``main_export`` refuse the ``sensi_bert`` model type (and infer the
library from the class's module), but the BERT ONNX config only needs hidden sizes, so the
low-level ``export`` handles per-layer head counts and FFN widths unchanged.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from .errors import SensiEdgeError, first_line

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization", "BiasGelu",
             "FastGelu", "Gelu", "QAttention", "MatMulInteger", "DynamicQuantizeMatMul", "QuantizeLinear",
             "DequantizeLinear", "QEmbedLayerNormalization", "LayerNormalization")


@contextlib.contextmanager
def in_tempdir():
    """onnxruntime's transformer/quantization tools leave temp files in the working directory."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="sensi-edge-ort-") as d:
        os.chdir(d)
        try:
            yield Path(d)
        finally:
            os.chdir(old)


def export_model(model, path: Path, opset: int = 17) -> None:
    """fp32 ONNX with dynamic batch and sequence axes; inputs ids/mask/token types."""
    from optimum.exporters.onnx import export
    from optimum.exporters.onnx.model_configs import BertOnnxConfig

    task = "question-answering" if hasattr(model, "qa_outputs") else "text-classification"
    model = model.cpu().eval()
    try:
        export(model, BertOnnxConfig(model.config, task=task), Path(path), opset=opset)
    except Exception as exc:
        raise SensiEdgeError(f"ONNX export failed: {first_line(exc)}") from exc
    model.eval()  # the exporter restores the previous mode of what it wrapped; be sure
    restore_unused_inputs(path)


def restore_unused_inputs(path: Path) -> list[str]:
    """Keep the input contract ids/mask/token types even when the graph ignores one.

    torch drops inputs nothing reads (attention_mask once every layer has 0 heads); callers
    then fail with 'invalid input name'. ORT accepts unused inputs, so they are added back.
    """
    m = onnx.load(str(path))
    have = {i.name for i in m.graph.input}
    missing = [n for n in INPUTS if n not in have]
    for n in missing:
        m.graph.input.append(helper.make_tensor_value_info(n, TensorProto.INT64, ["batch_size", "sequence_length"]))
    if missing:
        onnx.save(m, str(path))
    return missing


def fuse(src: Path, dst: Path) -> None:
    """Attention / SkipLayerNorm / BiasGelu / EmbedLayerNorm fusion with onnxruntime's optimizer.

    num_heads=0 lets the fuser read each layer's head count from its reshape constants, which is
    what keeps irregular per-layer head counts correct.
    """
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # The fuser warns that a pruned layer's q/k/v width differs from the hidden size; that is expected here.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    src, dst = Path(src).resolve(), Path(dst).resolve()
    with in_tempdir():
        opt = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0,
                             optimization_options=FusionOptions("bert"), opt_level=0, use_gpu=False)
        opt.save_model_to_file(str(dst))
    restore_unused_inputs(dst)


def op_counts(path: Path) -> dict[str, int]:
    m = onnx.load(str(path), load_external_data=False)
    counts = Counter(n.op_type for n in m.graph.node)
    out = {op: counts[op] for op in FUSED_OPS if counts.get(op)}
    out["total_nodes"] = len(m.graph.node)
    return out


def attention_heads(path: Path) -> list[int]:
    """num_heads of every fused Attention node, in graph order."""
    m = onnx.load(str(path), load_external_data=False)
    heads = []
    for n in m.graph.node:
        if n.op_type in ("Attention", "QAttention", "MultiHeadAttention"):
            heads += [a.i for a in n.attribute if a.name == "num_heads"]
    return heads
