"""``export --onnx``: fused fp32 and int8 ONNX variants, each verified before it is trusted.

For every variant: max |logit diff| and argmax agreement against PyTorch on ``parity_rows``
validation rows, and the task metric on the validation split. A variant that loses more than
``max_metric_drop`` points (or an fp32 graph that drifts > 1e-4 from PyTorch, or whose fused
Attention head counts differ from the model's) is rejected: moved to ``rejected/`` and marked in
the report. Everything is written to ``OUT.partial`` and renamed when complete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import compress_report_for, refuse_occupied, staged_output, write_json_atomic
from .errors import SensiEdgeError
from .options import option

FP32_TOLERANCE = 1e-4
QUANT_MODES = ("none", "dynamic", "static")


@dataclass(frozen=True)
class ExportConfig:
    """Every setting of an export; each field's help is the CLI's (``cli/generate.py`` builds the flags)."""

    model_dir: Path = option(argument=True, help="a compress OUT/model folder or any BERT classification checkpoint")
    output: Path = option(help="folder for the ONNX variants, tokenizer and export_report.json/.md")
    quantize: tuple[str, ...] = option(("dynamic",), choices=QUANT_MODES,
                                       help="none | dynamic | static (repeat for several); fp32 is always made")
    task: str | None = option(None, help="task preset", show_default="from the compress report beside the model")
    data: str | None = option(None, help="task data", show_default="from the compress report")
    eval_split: str | None = option(None, flag="split", help="split to verify on",
                                    show_default="the task's validation split")
    max_eval_samples: int | None = option(None, help="subsample the validation split")
    parity_rows: int = option(64, help="validation rows for the logit parity check")
    calibration_rows: int = option(128, help="training rows that calibrate static quantization")
    max_metric_drop: float = option(1.0, help="reject a variant losing more points than this")
    max_seq_length: int | None = option(None, help="tokens per row", show_default="128, 384 for squad")
    doc_stride: int = option(128, help="squad: token overlap between windows of a long context")
    opset: int = option(17, help="ONNX opset (17-23)")
    preset: str | None = option(None, choices=("vnni", "avx2", "avx512", "arm64"),
                                help="int8 preset: vnni | avx2 | avx512 | arm64", show_default="this CPU")
    weight_type: str | None = option(None, choices=("qint8", "quint8"), help="override the preset: qint8 | quint8")
    per_channel: bool | None = option(None, help="override the preset")
    reduce_range: bool | None = option(None, help="override the preset")
    threads: int | None = option(None, help="ONNX Runtime intra-op threads")
    layernorm: str = option("auto", choices=("auto", "skip", "split"),
                            help="residual LayerNorms: auto (time both forms here, keep the faster) | skip (fused "
                                 "SkipLayerNormalization) | split (Add + LayerNormalization)")

    def __post_init__(self):
        from . import checks

        bad = [q for q in self.quantize if q not in QUANT_MODES]
        if bad:
            raise SensiEdgeError(f"unknown --quantize {bad[0]!r}: use none, dynamic or static")
        checks.at_least("--max-eval-samples", self.max_eval_samples)
        checks.at_least("--parity-rows", self.parity_rows, optional=False)
        checks.at_least("--calibration-rows", self.calibration_rows, optional=False)
        checks.in_range("--max-metric-drop", self.max_metric_drop, 0, 100)
        checks.seq_len("--max-seq-length", self.max_seq_length)
        checks.at_least("--doc-stride", self.doc_stride, 0, optional=False)
        checks.in_range("--opset", self.opset, 17, 23)
        checks.threads("--threads", self.threads)
        from .onnx_graph import LAYERNORM_MODES

        if self.layernorm not in LAYERNORM_MODES:
            raise SensiEdgeError(f"unknown --layernorm {self.layernorm!r}: use {', '.join(LAYERNORM_MODES)}")
        if self.weight_type not in (None, "qint8", "quint8"):
            raise SensiEdgeError(f"unknown --weight-type {self.weight_type!r}: use qint8 or quint8")


@dataclass(frozen=True)
class ExportResult:
    output: Path
    report: dict

    @property
    def rejected(self) -> list[str]:
        return [v["name"] for v in self.report["variants"] if v["status"] == "rejected"]


def onnx_folder_config(config, qa: bool) -> dict:
    """config.json for the ONNX folder, so optimum's ORTModelFor* and ``pipeline`` load it as it is.

    optimum picks its model class from ``model_type``: ``bert``, as our trimmed models' own config says
    (folders saved before that said ``sensi_bert``); the graph itself is plain BERT ops. The folder keeps
    the per-layer sizes as information (``layer_num_heads``,
    ``layer_intermediate_sizes``: ONNX Runtime reads shapes from the graph, not from here) and the label
    names, and drops ``auto_map`` (its code files are not in this folder).
    """
    d = config.to_dict()
    d.pop("auto_map", None)
    d.pop("_name_or_path", None)
    d["model_type"] = "bert"
    d["architectures"] = ["BertForQuestionAnswering" if qa else "BertForSequenceClassification"]
    return d


def _parity(ref: np.ndarray, out: np.ndarray) -> dict:
    return {"max_abs_diff": float(np.abs(ref - out).max()), "argmax_agreement": float((ref.argmax(-1) == out.argmax(-1)).mean()),
            "rows": int(len(ref))}


def export(cfg: ExportConfig, log=print) -> ExportResult:
    from .data import load_task_data
    from .quantize import PRESETS, detect_preset
    from .runners import open_runner
    from .tasks import get_task
    from .tasks.scoring import find_tokenizer

    model_dir = Path(cfg.model_dir).expanduser().resolve()
    output = Path(cfg.output).expanduser().resolve()
    if cfg.preset and cfg.preset not in PRESETS:
        raise SensiEdgeError(f"unknown --preset {cfg.preset!r}: use one of {', '.join(PRESETS)}")
    if not model_dir.is_dir() or not (model_dir / "config.json").is_file():
        raise SensiEdgeError(f"{model_dir} is not a model folder (no config.json); pass a compress OUT/model folder")
    refuse_occupied(output)  # before any loading, so a wrong --output costs nothing
    from .loading import load_config
    from .checks import seq_len as check_seq_len

    check_seq_len("--max-seq-length", cfg.max_seq_length,
                  getattr(load_config(str(model_dir)), "max_position_embeddings", None))
    source = compress_report_for(model_dir)
    task_name = cfg.task or (source.task["name"] if source else None)
    data = cfg.data or (source.data if source else None)
    if not task_name or not data:
        raise SensiEdgeError("export verifies every variant on the task: pass --task and --data (or export a compress output)")
    overrides = {}
    if source and not cfg.task and source.task.get("kind", "classification") != "qa":
        overrides = {k: source.task[k] for k in ("text_columns", "label_column", "num_labels")}
    task = get_task(task_name, **overrides)
    train, val, task = load_task_data(data, task, cfg.eval_split)
    if cfg.max_eval_samples:
        val = val.select(range(min(cfg.max_eval_samples, len(val))))
    tokenizer = find_tokenizer(model_dir)
    torch_runner = open_runner(model_dir, cfg.threads, qa=task.kind == "qa")
    from .arch import adapter_for

    geometry = adapter_for(torch_runner.model).geometry(torch_runner.model)
    preset = PRESETS[cfg.preset] if cfg.preset else detect_preset()
    overrides = {k: v for k, v in (("weight_type", cfg.weight_type), ("per_channel", cfg.per_channel),
                                   ("reduce_range", cfg.reduce_range)) if v is not None}
    if overrides:
        from dataclasses import replace

        preset = replace(preset, name=f"{preset.name}+custom", **overrides)
    with staged_output(output, "export") as work:
        return _export(cfg, work, output, model_dir, task, data, train, val, tokenizer, torch_runner, geometry, log,
                       preset)


def _export(cfg, work, output, model_dir, task, data, train, val, tokenizer, torch_runner, geometry, log, preset):
    """PyTorch reference -> exported and fused graphs (checked after each step) -> int8 variants -> each
    variant scored, judged and recorded -> the folder's config, tokenizer and report."""
    from .checks import seq_len as check_seq_len
    from .tasks.evaluators import evaluator_for

    timings: dict[str, float] = {}
    seq_len = cfg.max_seq_length or task.default_seq_length
    check_seq_len("--max-seq-length", seq_len, getattr(torch_runner.model.config, "max_position_embeddings", None))
    ev = evaluator_for(task, tokenizer, seq_len, cfg.doc_stride)
    prepared = ev.prepare(val)
    parity_set = ev.select(prepared, cfg.parity_rows)
    t0 = time.perf_counter()
    ref_metrics = ev.score(torch_runner, prepared, desc="PyTorch reference").check_finite(model_dir).metrics
    ref_parity = ev.score(torch_runner, parity_set, desc="PyTorch parity rows").outputs
    timings["pytorch_reference"] = time.perf_counter() - t0
    log(f"PyTorch {task.metric}: {ref_metrics[task.metric]:.2f} on {len(val)} rows")
    judge = _Judge(cfg, ev, prepared, parity_set, ref_parity, ref_metrics[task.metric], task.metric, log)
    unfused, fused, layernorm, steps = _graphs(cfg, work, torch_runner.model, seq_len, judge, timings, log)
    from .onnx_graph import attention_heads

    expected_heads = [h for h in geometry.heads if h > 0]
    if expected_heads and not attention_heads(fused):
        log("note: onnxruntime fused no attention layer (its fuser did not match this graph's attention pattern): "
            "the graphs are correct (parity-checked) but run unfused attention, which is slower; the export report's "
            "ops show it. Both supported transformers lines (4.57, 5.x) fuse; another version may not")
    variants = [("fp32", fused, {"fused": True})] + _quantized(cfg, work, unfused, fused, train, ev, preset, timings)
    records = [judge.record(name, path, info, work, fused.stat().st_size, expected_heads, timings)
               for name, path, info in variants]
    unfused.unlink()  # only an intermediate: static int8 was made from it above
    tokenizer.save_pretrained(work)
    write_json_atomic(work / "config.json", onnx_folder_config(torch_runner.model.config, task.kind == "qa"))
    report = {
        "model_dir": str(model_dir), "task": task.to_dict(), "data": data, "split": task.validation_splits[0],
        "validation_rows": int(len(val)), "metric": task.metric, "pytorch_metrics": ref_metrics,
        "max_metric_drop": cfg.max_metric_drop, "opset": cfg.opset, "max_seq_length": seq_len,
        "geometry": geometry.to_dict(), "graph_steps": steps, "variants": records,
        "cpu_preset": preset.name, "layernorm": layernorm, "wall_seconds": {k: round(v, 2) for k, v in timings.items()},
        "versions": _versions(),
    }
    write_json_atomic(work / "export_report.json", report)
    (work / "export_report.md").write_text(render_markdown(report))
    return ExportResult(output, report)  # staged_output moves work/ to output/ on return


def _graphs(cfg, work, model, seq_len, judge, timings, log):
    """torch.onnx export, then ORT's transformer fusion; ORT is checked against PyTorch after each step
    (fusion of pruned attention can be silently wrong)."""
    from .onnx_graph import choose_layernorm, export_model, fuse

    t0 = time.perf_counter()
    unfused, fused = work / "model_unfused.onnx", work / "model.onnx"
    export_model(model, unfused, cfg.opset)
    steps = {"export": judge.parity(unfused, "export")}
    layernorm = choose_layernorm(unfused, seq_len, cfg.layernorm)
    fuse(unfused, fused, skip_layer_norm=layernorm["mode"] == "skip")
    steps["fuse"] = judge.parity(fused, "fuse")
    timings["export_and_fuse"] = time.perf_counter() - t0
    log(f"export parity {steps['export']['max_abs_diff']:.1e}, fused parity {steps['fuse']['max_abs_diff']:.1e}; "
        f"residual LayerNorms: {layernorm['mode']}" + (f" (measured {layernorm['median_ms']})" if "median_ms" in layernorm else ""))
    return unfused, fused, layernorm, steps


def _quantized(cfg, work, unfused, fused, train, ev, preset, timings) -> list[tuple[str, Path, dict]]:
    """The int8 variants asked for: dynamic from the fused graph, static (QDQ, calibrated) from the unfused one."""
    from .quantize import quantize_dynamic_int8, quantize_static_int8

    variants = []
    if "dynamic" in cfg.quantize:
        t0 = time.perf_counter()
        dst = work / "model_int8_dynamic.onnx"
        quantize_dynamic_int8(fused, dst, preset)
        timings["quantize_dynamic"] = time.perf_counter() - t0
        variants.append(("int8-dynamic", dst, {"fused": True, "quantization": {"mode": "dynamic", **preset.to_dict()}}))
    if "static" in cfg.quantize:
        t0 = time.perf_counter()
        calib_rows = train.shuffle(seed=0).select(range(min(cfg.calibration_rows, len(train))))
        calib = ev.calibration_inputs(ev.train_features(calib_rows), cfg.calibration_rows)
        dst = work / "model_int8_static.onnx"
        quantize_static_int8(unfused, dst, calib, preset)
        timings["quantize_static"] = time.perf_counter() - t0
        variants.append(("int8-static", dst, {"fused": False, "quantization": {
            "mode": "static-qdq", "calibration_rows": len(calib_rows), **preset.to_dict()}}))
    return variants


class _Judge:
    """Scores an ONNX variant against the PyTorch reference and decides: accepted, or rejected with reasons."""

    def __init__(self, cfg, ev, prepared, parity_set, ref_parity, ref_metric: float, metric: str, log):
        self.cfg, self.ev, self.prepared, self.parity_set = cfg, ev, prepared, parity_set
        self.ref_parity, self.ref_metric, self.metric, self.log = ref_parity, ref_metric, metric, log

    def parity(self, path: Path, name: str) -> dict:
        from .runners import OrtRunner

        outputs = self.ev.score(OrtRunner(path, self.cfg.threads), self.parity_set, desc=f"parity {name}").outputs
        return _parity(self.ref_parity, outputs)

    def reasons(self, name: str, drop: float, parity: dict, heads, fused: bool, expected_heads) -> list[str]:
        cfg, out = self.cfg, []
        if drop > cfg.max_metric_drop:
            out.append(f"{self.metric} drops {drop:.2f} points (> {cfg.max_metric_drop})")
        if not np.isfinite(parity["max_abs_diff"]):
            out.append("outputs are not finite (NaN/inf)")
        elif name == "fp32" and not parity["max_abs_diff"] <= FP32_TOLERANCE:
            out.append(f"fp32 logits differ from PyTorch by {parity['max_abs_diff']:.1e} (> {FP32_TOLERANCE})")
        if fused and heads and heads != expected_heads:
            out.append(f"fused Attention head counts {heads} differ from the model's {expected_heads}")
        return out

    def record(self, name, path: Path, info: dict, work: Path, fp32_size: int, expected_heads, timings) -> dict:
        from .onnx_graph import attention_heads, op_counts
        from .runners import OrtRunner

        t0 = time.perf_counter()
        metrics = self.ev.score(OrtRunner(path, self.cfg.threads), self.prepared, desc=f"scoring {name}").metrics
        timings[f"score_{name}"] = time.perf_counter() - t0
        parity = self.parity(path, name)
        drop = self.ref_metric - metrics[self.metric]
        heads = attention_heads(path)
        reasons = self.reasons(name, drop, parity, heads, info["fused"], expected_heads)
        status = "rejected" if reasons else "accepted"
        if status == "rejected":
            (work / "rejected").mkdir(exist_ok=True)
            path = path.rename(work / "rejected" / path.name)
        self.log(f"{name}: {self.metric} {metrics[self.metric]:.2f} (drop {drop:+.2f}), max |diff| "
                 f"{parity['max_abs_diff']:.2e}, {path.stat().st_size / 1e6:.1f} MB -> {status}"
                 + (f" ({'; '.join(reasons)})" if reasons else ""))
        return {"name": name, "file": str(path.relative_to(work)), "size_bytes": path.stat().st_size,
                "size_vs_fp32": path.stat().st_size / fp32_size, "ops": op_counts(path), "attention_heads": heads,
                **info, "parity": parity, "metrics": metrics, "metric_drop": drop, "status": status, "reasons": reasons}


def _versions() -> dict:
    import onnxruntime
    import torch
    import transformers

    return {"onnx": __import__("onnx").__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__}


def render_markdown(r: dict) -> str:
    m = r["metric"]
    lines = [
        f"# sensi-edge export report: {r['task']['name']}",
        "",
        f"- model: `{r['model_dir']}`; data `{r['data']}` split `{r['split']}` ({r['validation_rows']} rows)",
        f"- PyTorch {m}: {r['pytorch_metrics'][m]:.2f}; gate: reject a variant losing > {r['max_metric_drop']} point(s)",
        "- graph steps vs PyTorch: " + ", ".join(f"{k} max |diff| {v['max_abs_diff']:.1e}" for k, v in r["graph_steps"].items()),
        f"- int8 preset: {r['cpu_preset']}",
        f"- residual LayerNorms: {r.get('layernorm', {}).get('mode', 'skip')}"
        + (f" (median ms measured here: {r['layernorm']['median_ms']})" if "median_ms" in r.get("layernorm", {}) else ""),
        "",
        f"| variant | file | MB | size vs fp32 | {m} | drop | max abs logit diff | argmax agree | fused ops | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in r["variants"]:
        ops = ", ".join(f"{k} {n}" for k, n in v["ops"].items() if k != "total_nodes")
        lines.append(
            f"| {v['name']} | {v['file']} | {v['size_bytes'] / 1e6:.2f} | {v['size_vs_fp32']:.2f} | {v['metrics'][m]:.2f} | "
            f"{v['metric_drop']:+.2f} | {v['parity']['max_abs_diff']:.2e} | {v['parity']['argmax_agreement']:.3f} | {ops} | "
            f"{v['status']}{' (' + '; '.join(v['reasons']) + ')' if v['reasons'] else ''} |")
    return "\n".join(lines) + "\n"
