"""ONNX export of tiny irregular models: parity after each graph step, fused op counts, int8, the metric gate."""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper
import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from cli.main import app
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.export import ExportConfig, export
from sensi_edge.finetune import Recipe

from conftest import irregular_model_dir, transformers_major

INT8_MAX_DIFF_FRACTION = 0.15  # int8 parity tolerance: max |diff| <= 15% of the largest |fp32 logit|




@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory, sst2_dir):
    """A tiny model that really learned the toy task, compressed to 50% by the real pipeline."""
    from conftest import save_tiny_bert

    root = tmp_path_factory.mktemp("compressed")
    model_dir = save_tiny_bert(root / "base")
    cfg = CompressConfig(task="sst2", data=str(sst2_dir), output=root / "run", model=str(model_dir),
                         recipe=Recipe(epochs=4, learning_rate=2e-3, batch_size=8), calibration_samples=8, baseline=False)
    result = compress(cfg, log=lambda m: None)
    assert result.report["compressed"]["accuracy"] >= 90, "fixture model must be accurate for the gate test to mean anything"
    return result.output




def test_irregular_model_with_empty_layers_exports_fuses_and_quantizes(tmp_path, sst2_dir):
    model_dir, plan = irregular_model_dir(tmp_path)
    res = export(ExportConfig(model_dir, tmp_path / "onnx", quantize=("dynamic", "static"), task="sst2",
                              data=str(sst2_dir), max_metric_drop=100.0, calibration_rows=16, per_channel=False,
                              layernorm="skip"),  # the fused form, so the op counts below are fixed
                 log=lambda m: None)
    r = res.report
    assert r["graph_steps"]["export"]["max_abs_diff"] < 1e-4
    assert r["graph_steps"]["fuse"]["max_abs_diff"] < 1e-4
    v = {x["name"]: x for x in r["variants"]}
    fp32 = v["fp32"]
    layers_with_heads = [h for h in plan.trimmed.heads if h > 0]
    assert fp32["ops"].get("Attention", 0) == len(layers_with_heads)
    assert fp32["attention_heads"] == layers_with_heads
    assert fp32["ops"]["SkipLayerNormalization"] == 2 * len(plan.trimmed.heads)
    assert fp32["ops"].get("BiasGelu", 0) == sum(1 for f in plan.trimmed.ffn if f > 0)
    assert fp32["parity"]["max_abs_diff"] < 1e-4 and fp32["status"] == "accepted"
    dyn = v["int8-dynamic"]
    assert dyn["ops"].get("QAttention", 0) == len(layers_with_heads) and dyn["ops"].get("MatMulInteger", 0) > 0
    assert dyn["size_bytes"] < 0.5 * fp32["size_bytes"]
    assert dyn["quantization"]["per_channel"] is False and r["cpu_preset"].endswith("+custom")
    assert v["int8-static"]["ops"].get("QuantizeLinear", 0) > 0
    for name in ("int8-dynamic", "int8-static"):
        p = v[name]["parity"]
        assert p["argmax_agreement"] >= 0.9, name
    for f in ("model.onnx", "model_int8_dynamic.onnx", "model_int8_static.onnx", "tokenizer.json", "export_report.md"):
        assert (res.output / f).exists(), f
    assert not (tmp_path / "onnx.partial").exists()


def test_compressed_model_export_uses_its_report_and_keeps_accuracy(tmp_path, compressed_run):
    from sensi_edge.runners import OrtRunner, open_runner

    res = CliRunner().invoke(app, ["export", str(compressed_run / "model"), "--onnx", "--output", str(tmp_path / "onnx")])
    assert res.exit_code == 0, res.stderr
    r = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert r["task"]["name"] == "sst2" and all(v["status"] == "accepted" for v in r["variants"])
    # int8 parity within the stated tolerance, measured here independently of the report
    torch_runner = open_runner(compressed_run / "model")
    ort = OrtRunner(tmp_path / "onnx" / "model_int8_dynamic.onnx")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "onnx"))
    enc = dict(tok(["the film was great fun", "the film was awful and dull"], padding=True, return_tensors="np"))
    ref, out = torch_runner(enc)["logits"], ort(enc)["logits"]
    assert np.abs(ref - out).max() <= INT8_MAX_DIFF_FRACTION * np.abs(ref).max()
    # evaluate scores the PyTorch folder and the ONNX file by the same path, with the same result on fp32
    scores = []
    for target in (compressed_run / "model", tmp_path / "onnx" / "model.onnx"):
        ev = CliRunner().invoke(app, ["evaluate", str(target), "--task", "sst2", "--data", r["data"], "--json"])
        assert ev.exit_code == 0, ev.stderr
        scores.append(json.loads(ev.stdout)["metrics"]["accuracy"])
    assert scores[0] == scores[1] == r["pytorch_metrics"]["accuracy"]


def test_metric_gate_rejects_a_broken_variant(tmp_path, compressed_run, monkeypatch):
    import sensi_edge.quantize as q

    real = q.quantize_dynamic_int8

    def broken(src, dst, preset):
        real(src, dst, preset)
        m = onnx.load(str(dst))  # flip the sign of the logits: every prediction changes
        for node in m.graph.node:
            node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
        m.graph.node.append(onnx.helper.make_node("Neg", ["logits_raw"], ["logits"]))
        onnx.save(m, str(dst))

    monkeypatch.setattr(q, "quantize_dynamic_int8", broken)
    res = CliRunner().invoke(app, ["export", str(compressed_run / "model"), "--onnx", "--output", str(tmp_path / "o")])
    assert res.exit_code == 1 and "rejected variants: int8-dynamic" in res.stderr
    r = json.loads((tmp_path / "o" / "export_report.json").read_text())
    v = {x["name"]: x for x in r["variants"]}
    assert v["int8-dynamic"]["status"] == "rejected" and v["int8-dynamic"]["file"].startswith("rejected/")
    assert v["fp32"]["status"] == "accepted"
    assert not (tmp_path / "o" / "model_int8_dynamic.onnx").exists()


@pytest.mark.parametrize("args,message", [
    (["{missing}", "--onnx"], "is not a model folder"),
    (["{model}", "--onnx", "--quantize", "float8"], "unknown --quantize 'float8'"),
    (["{model}"], "pass --onnx"),
    (["{model}", "--onnx", "--data", "{data}"], "pass --task and --data"),
    (["{model}", "--onnx", "--task", "sst2", "--data", "{data}", "--weight-type", "int4"], "unknown --weight-type 'int4'"),
])
def test_export_bad_input(tmp_path, sst2_dir, args, message):
    model_dir, _ = irregular_model_dir(tmp_path)
    fill = {"{missing}": str(tmp_path / "nope"), "{model}": str(model_dir), "{data}": str(sst2_dir)}
    res = CliRunner().invoke(app, ["export", *[fill.get(a, a) for a in args], "--output", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_corrupt_onnx_file_is_reported(tmp_path, sst2_dir):
    model_dir, _ = irregular_model_dir(tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(tmp_path)
    res = CliRunner().invoke(app, ["evaluate", str(bad), "--task", "sst2", "--data", str(sst2_dir)])
    assert res.exit_code == 2 and "cannot load ONNX file" in res.stderr


def test_residual_layernorms_are_fused_or_split_as_chosen_and_sessions_keep_the_choice(tmp_path, tiny_model_dir):
    """--layernorm split leaves Add + LayerNormalization (no SkipLayerNormalization), the session every sensi-edge
    tool opens does not re-fuse it, both forms give the same outputs, and auto times both and keeps the faster."""
    import onnxruntime as ort

    from sensi_edge import bundle_runtime as rt
    from sensi_edge.loading import load_classifier
    from sensi_edge.onnx_graph import choose_layernorm, export_model, fuse, op_counts

    unfused = tmp_path / "u.onnx"
    export_model(load_classifier(str(tiny_model_dir), 2)[1], unfused)
    fuse(unfused, tmp_path / "skip.onnx", skip_layer_norm=True)
    fuse(unfused, tmp_path / "split.onnx", skip_layer_norm=False)
    assert op_counts(tmp_path / "skip.onnx").get("SkipLayerNormalization", 0) > 0
    split_ops = op_counts(tmp_path / "split.onnx")
    assert "SkipLayerNormalization" not in split_ops and split_ops.get("LayerNormalization", 0) > 0
    feed = rt.random_inputs(2, 16)
    outs = [rt.ort_callable(rt.ort_session(tmp_path / f, 1))(feed)[0] for f in ("skip.onnx", "split.onnx")]
    assert np.abs(outs[0] - outs[1]).max() < 1e-4
    # what the shared session runs: ORT's own optimizer must not turn the split graph back into SkipLayerNorm
    seen = tmp_path / "as_run.onnx"
    rt.ort_session(tmp_path / "split.onnx", 1, save_optimized=seen)
    assert "SkipLayerNormalization" not in {n.op_type for n in onnx.load(str(seen)).graph.node}
    plain = tmp_path / "plain_session.onnx"  # a default session would fuse it (what the option prevents)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(plain)
    ort.InferenceSession(str(tmp_path / "split.onnx"), opts, providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" in {n.op_type for n in onnx.load(str(plain)).graph.node}
    auto = choose_layernorm(unfused, 16, "auto", seconds=0.05)
    assert auto["mode"] in ("skip", "split") and set(auto["median_ms"]) == {"skip", "split"}
    assert auto["mode"] == min(auto["median_ms"], key=auto["median_ms"].get)
    assert choose_layernorm(unfused, 16, "skip") == {"mode": "skip", "chosen_by": "flag"}


def _projection_reshape_graph(path, widths, head_dim=8, shared_shape=False, constant_dims=False):
    """x (2, 5, 32) -> per width w: MatMul + Add -> Reshape to (batch, seq, -1, head_dim), built the way
    transformers 5 traces it (batch and seq gathered from the input's shape); unnamed nodes, as torch may leave."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    const = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, dtype=np.int64)))  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["shape_x"]), const("i0", 0), const("i1", 1), const("ax", [0]),
             const("minus1", [-1]), const("hd", [head_dim]), const("c2", [2]), const("c5", [5])]
    for d, idx in (("b", "i0"), ("s", "i1")):
        nodes += [helper.make_node("Gather", ["shape_x", idx], [f"{d}_scalar"], axis=0),
                  helper.make_node("Unsqueeze", [f"{d}_scalar", "ax"], [d])]
    inits, outputs = [], []
    for k, w in enumerate(widths):
        inits += [numpy_helper.from_array(rng.standard_normal((32, w)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(w).astype(np.float32), f"b{k}")]
        dims = ["c2", "c5"] if constant_dims else ["b", "s"]
        shape = "shape0" if shared_shape else f"shape{k}"
        if k == 0 or not shared_shape:
            nodes.append(helper.make_node("Concat", [*dims, "minus1", "hd"], [shape], axis=0))
        nodes += [helper.make_node("MatMul", ["x", f"w{k}"], [f"mm{k}"]), helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"p{k}"]),
                  helper.make_node("Reshape", [f"p{k}", shape], [f"q{k}"])]
        outputs.append(helper.make_tensor_value_info(f"q{k}", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 32])], outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run_graph(path):
    import onnxruntime as ort

    x = {"x": np.random.default_rng(1).standard_normal((2, 5, 32)).astype(np.float32)}
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)


def test_head_counts_are_named_in_reshapes_that_leave_them_minus_one(tmp_path):
    """transformers 5 reshapes q/k/v to (batch, seq, -1, head_dim); export writes the head count the -1 stands for
    (the projection's width / head_dim), per reshape, which is what onnxruntime's fuser reads. Outputs stay the same."""
    from onnx import numpy_helper

    from sensi_edge.onnx_graph import name_head_counts

    path = tmp_path / "g.onnx"
    _projection_reshape_graph(path, widths=(24, 16))  # two layers of 3 and 2 heads, nodes unnamed
    before = _run_graph(path)
    assert name_head_counts(path) == 2
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i).tolist() for i in m.graph.initializer}
    concats = {n.output[0]: n for n in m.graph.node if n.op_type == "Concat"}
    assert [inits[concats[f"shape{k}"].input[2]] for k in (0, 1)] == [[3], [2]]
    after = _run_graph(path)
    assert all(np.array_equal(p, q) for p, q in zip(before, after))
    assert name_head_counts(path) == 0  # nothing left to name


@pytest.mark.parametrize("kind", ["shared_shape", "constant_dims"])
def test_head_count_rewrite_leaves_other_patterns_alone(tmp_path, kind):
    """A shape shared by reshapes of different widths would need two counts; with constant leading dims the -1
    can stand for more than the heads. Neither is the traced pattern: both are left as they are."""
    from sensi_edge.onnx_graph import name_head_counts

    path = tmp_path / "g.onnx"
    _projection_reshape_graph(path, widths=(24, 24) if kind == "shared_shape" else (24,), **{kind: True})
    before = _run_graph(path)
    assert name_head_counts(path) == 0
    assert all(np.array_equal(p, q) for p, q in zip(before, _run_graph(path)))


def test_export_restores_the_attention_implementation_even_when_tracing_fails(tmp_path, monkeypatch):
    """On transformers 5 export traces eager attention; the model the caller keeps must not stay switched."""
    import torch
    from transformers import BertForSequenceClassification

    from conftest import tiny_config
    from sensi_edge.errors import SensiEdgeError
    from sensi_edge.onnx_graph import export_model

    model = BertForSequenceClassification(tiny_config(layers=1, heads=2, hidden=16, ffn=16))
    model.config._attn_implementation = "sdpa"
    seen = []

    def broken(*a, **k):
        seen.append(model.config._attn_implementation)
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(SensiEdgeError, match="ONNX export failed: tracer exploded"):
        export_model(model, tmp_path / "m.onnx")
    assert seen == ["eager" if transformers_major() >= 5 else "sdpa"] and model.config._attn_implementation == "sdpa"
