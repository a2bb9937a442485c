"""ONNX export and ORT transformer fusion, each step checked against PyTorch by the caller.

Export calls ``torch.onnx.export`` (the TorchScript exporter) directly, with the same arguments
optimum-onnx 0.1.0 passes for BERT: inputs ids/mask/token types, outputs named ``logits`` or
``start_logits``/``end_logits``, dynamic batch and sequence axes, constant folding. Why not optimum's
exporter: optimum-onnx 0.1.0 requires transformers < 4.58, so depending on it would downgrade a
transformers 5.x environment. One exporter on both transformers lines means the parity gates always
judge the same kind of graph.

Two things make a transformers 5 graph fusable, both applied at export (the export step's parity gate
judges the result): attention traced in its eager form (``_eager_attention``), and the per-head reshapes'
``-1`` replaced by the head count it stands for (``name_head_counts``).
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
from .runners import INPUT_NAMES as INPUTS  # one contract for runners, exporter and ONNX folders
from .runners import output_names

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


def _positional(model, outputs: tuple[str, ...]):
    """The model as a function of (input_ids, attention_mask, token_type_ids) returning its logits as
    a tuple, so the traced graph has exactly the input and output names the runners and optimum use.
    (Built here, not at import, so that quantize and the ONNX-only tools do not pull in torch.)"""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             return_dict=True)
            return tuple(out[name] for name in outputs)

    return Positional()


def export_model(model, path: Path, opset: int = 17) -> None:
    """fp32 ONNX with dynamic batch and sequence axes; inputs ids/mask/token types."""
    import warnings

    import torch

    model = model.cpu().eval()
    outputs = output_names(model)
    ids = torch.full((2, 16), 1000, dtype=torch.long)  # shapes are dynamic; values only need to be valid ids
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    mask[1, 10:] = 0  # a padded row, so the mask path is traced as data-dependent
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in INPUTS}
    axes.update({n: {0: "batch_size"} if n == "logits" else {0: "batch_size", 1: "sequence_length"} for n in outputs})
    try:
        with torch.no_grad(), warnings.catch_warnings(), _eager_attention(model):
            warnings.simplefilter("ignore")  # TracerWarnings about python control flow on shapes
            torch.onnx.export(_positional(model, outputs).eval(), (ids, mask, types), str(path), input_names=list(INPUTS),
                              output_names=list(outputs), dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        restore_unused_inputs(path)
        name_head_counts(path)
    except Exception as exc:
        raise SensiEdgeError(f"ONNX export failed: {first_line(exc)}") from exc
    finally:
        model.eval()  # the exporter restores the previous mode of what it wrapped; be sure


@contextlib.contextmanager
def _eager_attention(model):
    """Trace attention in its eager form (MatMul, Softmax, MatMul), the pattern onnxruntime's fuser matches.

    transformers 5 switches attention per call (``set_attn_implementation``) and traces SDPA as its
    decomposition (q and k each scaled by sqrt(scale), a Where(-inf) mask), which the fuser does not match.
    transformers 4.57's BERT fixes its attention class at construction and its SDPA class already traces in
    the fusable form, so there is nothing to switch (and its mask path reads the same config field, so it is
    left alone). The field is set directly, not through ``set_attn_implementation``: transformers decides
    whether that is allowed by a regex over the modeling source, which our ``EmptyAttention`` trips.
    """
    import transformers

    before = getattr(model.config, "_attn_implementation", None)
    switch = before not in (None, "eager") and int(transformers.__version__.split(".")[0]) >= 5
    if switch:
        model.config._attn_implementation = "eager"
    try:
        yield
    finally:
        if switch:
            model.config._attn_implementation = before


def _constant(graph_index: tuple[dict, dict], name: str):
    """The value of an initializer or Constant node output, else None."""
    from onnx import numpy_helper

    inits, producers = graph_index
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _projection_width(graph_index: tuple[dict, dict], add) -> int | None:
    """Output width of ``MatMul(x, W) + b``: the bias length, else W's second dimension."""
    for name in add.input:
        c = _constant(graph_index, name)
        if c is not None and c.ndim == 1 and c.size > 1:
            return int(c.shape[0])
        mm = graph_index[1].get(name)
        if mm is not None and mm.op_type == "MatMul":
            w = _constant(graph_index, mm.input[1])
            if w is not None and w.ndim == 2:
                return int(w.shape[1])
    return None


def name_head_counts(path: Path) -> int:
    """Write each attention layer's head count into its q/k/v reshapes; returns how many were rewritten.

    transformers 5 reshapes a projection to ``(batch, seq, -1, head_dim)``; onnxruntime's fuser reads a
    layer's head count from that shape and gives up on ``-1`` (num_heads=0, see ``fuse``), so no attention
    is fused. The ``-1`` always resolves to the projection's width / head_dim, which the graph itself holds
    (the bias or weight of the MatMul + Add feeding the reshape), so it is replaced by that number: the
    same computation, per layer, correct for irregular (trimmed) layers. Graphs whose reshapes already name
    the count (transformers 4.57) are left untouched, and so is anything that is not exactly that pattern:
    the batch and sequence dims must come from the input's shape (not constants, where -1 could stand for
    more than the heads), and the shape must feed this reshape alone (a shared one could need two counts).
    """
    import numpy as np
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    index = ({i.name: i for i in g.initializer}, {o: n for n in g.node for o in n.output})
    consumers = Counter(i for n in g.node for i in n.input)
    rewritten = 0
    for node in g.node:
        if node.op_type != "Reshape":
            continue
        concat, source = index[1].get(node.input[1]), index[1].get(node.input[0])
        if (concat is None or concat.op_type != "Concat" or len(concat.input) != 4 or consumers[concat.output[0]] != 1
                or source is None or source.op_type != "Add"
                or any(_constant(index, d) is not None for d in concat.input[:2])):
            continue
        heads, head_dim = _constant(index, concat.input[2]), _constant(index, concat.input[3])
        width = _projection_width(index, source)
        if heads is None or head_dim is None or heads.tolist() != [-1] or head_dim.size != 1 or not width:
            continue
        if head_dim.item() <= 0 or width % head_dim.item():
            continue
        name = f"{concat.output[0]}/num_heads"  # a node output name is unique in the graph; node names need not be
        g.initializer.append(numpy_helper.from_array(np.array([width // head_dim.item()], dtype=np.int64), name))
        concat.input[2] = name
        rewritten += 1
    if rewritten:
        onnx.save(m, str(path))
    return rewritten


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


LAYERNORM_MODES = ("auto", "skip", "split")


def fuse(src: Path, dst: Path, skip_layer_norm: bool = True) -> None:
    """Attention / SkipLayerNorm / BiasGelu / EmbedLayerNorm fusion with onnxruntime's optimizer.

    num_heads=0 lets the fuser read each layer's head count from its reshape constants, which is
    what keeps irregular per-layer head counts correct. ``skip_layer_norm=False`` leaves each residual
    as Add + LayerNormalization (see ``choose_layernorm``); sensi-edge's sessions keep it that way.
    """
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # The fuser warns that a pruned layer's q/k/v width differs from the hidden size; that is expected here.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    src, dst = Path(src).resolve(), Path(dst).resolve()
    with in_tempdir():
        options = FusionOptions("bert")
        options.enable_skip_layer_norm = skip_layer_norm
        opt = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0,
                             optimization_options=options, opt_level=0, use_gpu=False)
        opt.save_model_to_file(str(dst))
    restore_unused_inputs(dst)


def choose_layernorm(unfused: Path, seq_len: int, mode: str = "auto", seconds: float = 0.5) -> dict:
    """Fuse each residual + LayerNorm into ORT's SkipLayerNormalization ("skip") or keep Add + LayerNormalization
    ("split"). On some CPUs the fused kernel is the slow one: on this project's Xeon host the dense int8 MiniLM ran
    17.3-18.8 ms fused against 14.2-15.6 ms split (benchmarks/results/latency_budget.md). ``auto`` fuses both ways and times them on this machine (batch 1,
    ``seq_len`` tokens, 1 thread, interleaved) and keeps the faster; the choice and the timings are returned."""
    from . import bundle_runtime as rt

    if mode not in LAYERNORM_MODES:
        raise SensiEdgeError(f"unknown --layernorm {mode!r}: use {', '.join(LAYERNORM_MODES)}")
    if mode != "auto":
        return {"mode": mode, "chosen_by": "flag"}
    with tempfile.TemporaryDirectory(prefix="sensi-edge-ln-") as tmp:
        paths = {m: Path(tmp) / f"{m}.onnx" for m in ("skip", "split")}
        for m, path in paths.items():
            fuse(unfused, path, skip_layer_norm=m == "skip")
        fns = {m: rt.ort_callable(rt.ort_session(path, 1)) for m, path in paths.items()}
        samples = rt.interleaved(fns, rt.random_inputs(1, seq_len, seed=4), 3, 20, seconds)
    ms = {m: rt.percentiles(v)["median_ms"] for m, v in samples.items()}
    return {"mode": min(ms, key=ms.get), "chosen_by": "measured here (fp32, batch 1, 1 thread)",
            "median_ms": ms, "seq_len": seq_len}


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
