"""``bench``: latency of PyTorch folders and ONNX files, side by side in one run.

Variants are measured in shuffled, interleaved rounds (see ``bundle_runtime.interleaved``) so
machine noise hits them alike; every variant gets a speedup ratio against a baseline measured in
the same rounds (default: the dense fp32 PyTorch model the variants came from). Load time,
first-inference time and peak RSS come from a fresh subprocess per variant, so one variant's
memory never counts against another. Achieved GFLOP/s is the FLOPs of the actual (trimmed,
irregular) encoder over the median latency, shown against an ONNX Runtime GEMM ceiling measured
in the same run (fp32 MatMul / int8 MatMulInteger).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bundle_runtime as rt
from .artifacts import compress_report_for, export_report_for, write_json_atomic
from .cost import Geometry, encoder_flops
from .errors import SensiEdgeError, first_line
from .options import option
from .runners import head_of_config, head_of_outputs
from .tasks import default_seq_len

INT8_OPS = {"QAttention", "MatMulInteger", "DynamicQuantizeMatMul", "QuantizeLinear", "QEmbedLayerNormalization"}


@dataclass
class Variant:
    name: str
    path: Path
    kind: str  # "pytorch" | "onnx"
    precision: str  # "fp32" | "int8"
    geometry: Geometry | None
    size_bytes: int
    metric: dict | None = None
    is_qa: bool = False
    has_head: bool = True  # False for a checkpoint without a task head (BertModel, BertForMaskedLM): bench picks one
    extra: dict = field(default_factory=dict)


def describe(path: Path) -> Variant:
    """What a path is: kind, precision, geometry (for FLOPs), size and known task metric."""
    path = Path(path)
    if not path.exists():
        raise SensiEdgeError(f"{path} does not exist; pass model folders or .onnx files")
    if path.suffix == ".onnx":
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:
            raise SensiEdgeError(f"{path} is not a valid ONNX file ({first_line(exc, 120)}); pass a model*.onnx written "
                                 "by sensi-edge export") from exc
        ops = {n.op_type for n in graph.node}
        report = export_report_for(path)
        geometry = report.geometry if report else None
        value = report.metric_of(path) if report else None
        metric = {"name": report.metric, "value": value} if value is not None else None
        outputs = [o.name for o in graph.output]
        name = f"{path.parent.name}/{path.stem}"
        return Variant(name, path, "onnx", "int8" if ops & INT8_OPS else "fp32", geometry, path.stat().st_size, metric,
                       is_qa=head_of_outputs(outputs) == "qa")
    if not (path / "config.json").is_file():
        raise SensiEdgeError(f"{path} is neither an .onnx file nor a model folder with config.json; pass a compress "
                             "OUT/model folder or an exported .onnx file")
    from .loading import load_config

    from .arch import adapter_for

    cfg = load_config(str(path))
    report = compress_report_for(path)
    metric = {"name": report.metric, "value": report.metric_value} if report else None
    size = sum(f.stat().st_size for f in path.glob("*.safetensors")) or sum(f.stat().st_size for f in path.glob("*.bin"))
    head = head_of_config(cfg)
    return Variant(path.name if path.name != "model" else f"{path.parent.name}/model", path, "pytorch", "fp32",
                   adapter_for(cfg).geometry_from_config(cfg), size, metric, is_qa=head == "qa", has_head=head is not None)


def auto_baseline(paths: list[Path]) -> Path | None:
    """The dense pretrained model a compress/export output came from (recorded in its reports).

    A hub id is looked up in the local Hugging Face cache (compress downloaded it there) rather than
    downloaded again: bench must not start a download the user did not ask for. A recorded base model
    that is gone is an error, not a silent bench without ratios.
    """
    for p in paths:
        p = Path(p)
        model_dir = p
        if p.suffix == ".onnx":
            r = export_report_for(p)
            if not r:
                continue
            model_dir = Path(r.model_dir)
        facts = compress_report_for(model_dir)
        if facts:
            return _local_base_model(facts.base_model, model_dir)
    return None


def _local_base_model(spec: str, came_from: Path) -> Path:
    from huggingface_hub import snapshot_download

    from .loading import looks_like_path

    path = Path(spec).expanduser()
    if path.exists():
        return path
    fix = "pass --baseline PATH or --no-baseline"
    if looks_like_path(spec):
        raise SensiEdgeError(f"{came_from} was compressed from {spec}, which no longer exists; {fix}")
    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception as exc:  # not cached (or the id is malformed): name the model and the fix
        raise SensiEdgeError(f"{came_from} was compressed from hub model {spec!r}, which is not in the local "
                             f"Hugging Face cache ({first_line(exc)}); {fix}") from exc


def make_callable(v: Variant, threads: int):
    if v.kind == "onnx":
        return rt.ort_callable(rt.ort_session(v.path, threads))
    import torch

    from .runners import open_runner

    runner = open_runner(v.path, qa=v.is_qa)

    def run(feed):
        torch.set_num_threads(threads)
        return runner(feed)

    return run


def load_probe(path: Path, threads: int, batch: int, seq_len: int, qa: bool = False) -> dict:
    """Load time, first-inference time and peak RSS of one variant in a fresh process."""
    code = ("import json,sys; from sensi_edge.bench import _probe_main; "
            f"print(json.dumps(_probe_main({str(path)!r}, {threads}, {batch}, {seq_len}, {qa})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SensiEdgeError(f"cannot run {path}: {res.stderr.strip().splitlines()[-1][:200] if res.stderr.strip() else 'crashed'}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _probe_main(path: str, threads: int, batch: int, seq_len: int, qa: bool = False) -> dict:
    base_rss = rt.peak_rss_mb()
    v = describe(Path(path))
    v.is_qa = v.is_qa or qa  # a bare baseline gets the head bench chose for it
    t0 = time.perf_counter()
    fn = make_callable(v, threads)
    load = time.perf_counter() - t0
    feed = rt.random_inputs(batch, seq_len)
    t0 = time.perf_counter()
    fn(feed)
    first = time.perf_counter() - t0
    return {"load_seconds": load, "first_inference_seconds": first, "peak_rss_mb": rt.peak_rss_mb(),
            "rss_before_load_mb": base_rss}


@dataclass(frozen=True)
class BenchConfig:
    """Every setting of a latency measurement; each field's help is the CLI's (``cli/generate.py`` builds the flags)."""

    models: tuple[Path, ...] = option(argument=True, help="model folders and/or .onnx files")
    baseline: Path | None = option(None, help="baseline model", show_default="the dense model the variants came from")
    auto_baseline: bool = option(True, cli=False)  # the CLI's --no-baseline
    batch: int = option(1, help="sequences per run")
    seq_len: int | None = option(None, help="tokens per sequence", show_default="128, 384 for QA models")
    threads: tuple[int, ...] = option((1, 2), help="thread counts (repeat the flag)")
    warmup: int = option(10, help="untimed runs per variant first")
    min_runs: int = option(100, flag="runs", help="runs per variant (or --seconds, whichever comes first)")
    min_seconds: float = option(10.0, flag="seconds", help="measured seconds per variant (or --runs)")
    ceiling_seconds: float = option(2.0, cli=False)
    # real inputs: batch 1 over a task's validation texts at their own lengths, tokenizer timed apart
    texts_from: str | None = option(None, help="also time batch 1 over this task data's validation texts at their own "
                                               "lengths (with --task)")
    task: str | None = option(None, help="the task preset of --texts-from (names its text columns)")
    texts: int = option(500, help="validation texts used by --texts-from")
    passes: int = option(2, help="times every text runs through every variant")

    def __post_init__(self):
        from . import checks

        checks.at_least("--batch", self.batch, optional=False)
        checks.seq_len("--seq-len", self.seq_len)
        if not self.threads:
            raise SensiEdgeError("--threads needs at least one thread count")
        checks.threads("--threads", self.threads)
        checks.at_least("--runs", self.min_runs, optional=False)
        checks.in_range("--seconds", self.min_seconds, 0, 3600, lo_open=True)
        checks.at_least("--warmup", self.warmup, 0, optional=False)
        checks.at_least("--texts", self.texts, optional=False)
        checks.at_least("--passes", self.passes, optional=False)
        if (self.texts_from is None) != (self.task is None):
            raise SensiEdgeError("--texts-from and --task go together (the task names the text columns)")


def _variants(cfg: BenchConfig) -> tuple[list[Variant], Variant | None]:
    """The models to time, the baseline first (named ``baseline:...``), names made unique."""
    if not cfg.models:
        raise SensiEdgeError("give at least one model folder or .onnx file")
    variants = [describe(Path(p)) for p in cfg.models]
    base_path = cfg.baseline or (auto_baseline(list(cfg.models)) if cfg.auto_baseline else None)
    baseline = None
    if base_path is not None:
        baseline = describe(Path(base_path))
        baseline.name = f"baseline:{baseline.name}"
        if baseline.kind == "pytorch" and not baseline.has_head:
            # a bare pretrained encoder (what compress starts from) is timed with the compared models' head:
            # a QA model's baseline at seq 384 with a classification head would not be the model it replaces
            baseline.is_qa = any(v.is_qa for v in variants)
        variants = [baseline] + [v for v in variants if v.path != baseline.path]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        for i, v in enumerate(variants):
            v.name = f"{i}:{v.name}"
    return variants, baseline


def _fixed_length_result(cfg: BenchConfig, v: Variant, threads: int, seq: int, samples, probe: dict, ceiling: dict,
                         base_median: float | None, baseline: Variant | None) -> dict:
    """One variant's row at a fixed length: percentiles, achieved GFLOP/s against the GEMM ceiling, speed-up."""
    stats = rt.percentiles(samples)
    flops = encoder_flops(v.geometry, seq) * cfg.batch if v.geometry else None
    gflops = flops / (stats["median_ms"] / 1e3) / 1e9 if flops else None
    return {
        "variant": v.name, "path": str(v.path), "kind": v.kind, "precision": v.precision, "threads": threads,
        "head": "qa" if v.is_qa else "classification",
        "batch": cfg.batch, "seq_len": seq, **stats, **probe, "size_bytes": v.size_bytes,
        "flops": flops, "achieved_gflops": gflops, "ceiling_kind": v.precision,
        "ceiling_gflops": ceiling[v.precision]["gflops"],
        "pct_of_ceiling": 100 * gflops / ceiling[v.precision]["gflops"] if gflops else None,
        "speedup_vs_baseline": base_median / stats["median_ms"] if base_median else None,
        "is_baseline": baseline is not None and v.name == baseline.name,
        "metric": v.metric, "geometry": v.geometry.to_dict() if v.geometry else None,
    }


def bench(cfg: BenchConfig, log=print) -> dict:
    import os

    # torch's OpenMP workers busy-wait after each op by default; interleaved with ORT they would steal
    # its cores. Only effective before torch is first imported, which bench does lazily.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    variants, baseline = _variants(cfg)
    seq = cfg.seq_len or default_seq_len(any(v.is_qa for v in variants))
    feed = rt.random_inputs(cfg.batch, seq)
    env = rt.environment()
    results = []
    from .progress import track

    for threads in cfg.threads:
        log(f"threads {threads}: load probes, GEMM ceiling, {len(variants)} variants interleaved")
        probes = {v.name: load_probe(v.path, threads, cfg.batch, seq, v.is_qa) for v in track(variants, "load probes")}
        ceiling = rt.gemm_ceiling(threads, min_seconds=cfg.ceiling_seconds, min_runs=5 if cfg.ceiling_seconds < 1 else 20)
        fns = {v.name: make_callable(v, threads) for v in variants}
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            bar = progress.add_task(f"latency, {threads} thread(s)", total=1.0)
            samples = rt.interleaved(fns, feed, cfg.warmup, cfg.min_runs, cfg.min_seconds,
                                     progress=lambda f: progress.update(bar, completed=f))
        base_median = rt.percentiles(samples[baseline.name])["median_ms"] if baseline else None
        results += [_fixed_length_result(cfg, v, threads, seq, samples[v.name], probes[v.name], ceiling, base_median,
                                         baseline) for v in variants]
        if cfg.texts_from:
            results += _real_input_results(cfg, variants, fns, threads, baseline, log)
    env["load_average_after"] = list(os.getloadavg())
    import torch

    env["versions"]["torch"] = torch.__version__
    return {"schema": rt.REPORT_SCHEMA, "source": "bench", "environment": env,
            "settings": {"batch": cfg.batch, "seq_len": seq, "threads": list(cfg.threads), "warmup": cfg.warmup,
                         "real_inputs": {"data": cfg.texts_from, "task": cfg.task, "rows": cfg.texts,
                                         "passes": cfg.passes} if cfg.texts_from else None,
                         "spinning": "off (ORT allow_spinning=0, OMP_WAIT_POLICY=PASSIVE)",
                         "min_runs": cfg.min_runs, "min_seconds": cfg.min_seconds,
                         "flops_counted": "encoder matmul FLOPs of the actual architecture x batch"},
            "baseline": baseline.name if baseline else None, "results": results}


def real_input_feeds(cfg: BenchConfig, variants: list[Variant]) -> tuple[list[dict], list[float], int]:
    """The validation texts as batch-1 feeds at their own lengths (truncated at the task's sequence length), and
    the tokenizer's time per text (ms, fastest of ``passes``): what a deployed model sees, and what it costs to
    get there. The tokenizer is the one beside the first variant that has one (all variants share the base
    model's vocabulary)."""
    import numpy as np
    from transformers import AutoTokenizer

    from .data import load_task_data
    from .tasks import get_task

    task = get_task(cfg.task)
    if task.kind == "qa":
        raise SensiEdgeError("--texts-from measures sentence tasks at their own lengths; for squad use --seq-len 384")
    _, val, task = load_task_data(cfg.texts_from, task)
    val = val.select(range(min(cfg.texts, len(val))))
    folder = next((v.path if v.path.is_dir() else v.path.parent for v in variants
                   if any(((v.path if v.path.is_dir() else v.path.parent) / n).is_file()
                          for n in ("tokenizer.json", "vocab.txt"))), None)
    if folder is None:
        raise SensiEdgeError("no tokenizer beside any of the models; --texts-from needs one (export and compress save it)")
    tok = AutoTokenizer.from_pretrained(str(folder))
    seq = task.default_seq_length
    feeds, tok_ms = [], []
    for row in val:
        texts = [row[c] for c in task.text_columns]
        best = float("inf")
        for _ in range(cfg.passes):
            t0 = time.perf_counter()
            enc = tok(*texts, truncation=True, max_length=seq, return_tensors="np")
            best = min(best, (time.perf_counter() - t0) * 1e3)
        tok_ms.append(best)
        feeds.append({k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return feeds, tok_ms, seq


def _real_input_results(cfg, variants, fns, threads, baseline, log) -> list[dict]:
    import numpy as np

    feeds, tok_ms, seq = real_input_feeds(cfg, variants)
    tokens = [f["input_ids"].shape[1] for f in feeds]
    log(f"threads {threads}: {len(feeds)} real {cfg.task} texts (mean {np.mean(tokens):.1f} tokens), "
        f"{cfg.passes} passes, interleaved per text")
    samples = rt.interleaved_rows(fns, feeds, cfg.passes)
    tok = rt.percentiles(tok_ms)
    base_median = rt.percentiles(samples[baseline.name])["median_ms"] if baseline else None
    out = []
    for v in variants:
        stats = rt.percentiles(samples[v.name])
        out.append({
            "variant": v.name, "path": str(v.path), "kind": v.kind, "precision": v.precision, "threads": threads,
            "head": "classification", "batch": 1, "seq_len": None, "inputs": "real", "texts": len(feeds),
            "mean_tokens": float(np.mean(tokens)), "max_tokens": int(max(tokens)), "truncated_at": seq, **stats,
            "tokenizer_median_ms": tok["median_ms"], "tokenizer_p90_ms": tok["p90_ms"],
            "with_tokenizer_median_ms": stats["median_ms"] + tok["median_ms"],
            "size_bytes": v.size_bytes, "speedup_vs_baseline": base_median / stats["median_ms"] if base_median else None,
            "is_baseline": baseline is not None and v.name == baseline.name, "metric": v.metric,
            "geometry": v.geometry.to_dict() if v.geometry else None,
        })
    return out


def render_markdown(report: dict) -> str:
    env = report["environment"]
    isa = ", ".join(k for k, v in env["cpu"]["isa"].items() if v) or "none detected"
    s = report.get("settings", {})
    lines = [
        f"# Latency: {env['cpu']['model']} ({env['cpu']['machine']}, {env['cpu']['cores']} cores; {isa})",
        "",
        f"batch {s.get('batch')}, seq len {s.get('seq_len')}, warm-up {s.get('warmup')}, >= {s.get('min_runs')} runs or "
        f">= {s.get('min_seconds')} s per variant, interleaved rounds; load average {env.get('load_average')} -> "
        f"{env.get('load_average_after')}; versions {env['versions']}",
        "",
        "| variant | kind | threads | median ms | p90 ms | p99 ms | runs | speedup | GFLOP/s | % ceiling | load s | first s | peak RSS MB | MB on disk | metric |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fixed = [r for r in report["results"] if r.get("inputs") != "real"]
    real = [r for r in report["results"] if r.get("inputs") == "real"]
    for r in fixed:
        fmt = lambda x, f: (f.format(x) if x is not None else "-")  # noqa: E731
        metric = f"{r['metric']['name']} {r['metric']['value']:.2f}" if r.get("metric") else "-"
        lines.append(
            f"| {r['variant']} | {r['kind']} {r['precision']} | {r['threads']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['runs']} | {fmt(r.get('speedup_vs_baseline'), '{:.2f}x')} | "
            f"{fmt(r.get('achieved_gflops'), '{:.1f}')} | {fmt(r.get('pct_of_ceiling'), '{:.0f}%')} | "
            f"{fmt(r.get('load_seconds'), '{:.2f}')} | {fmt(r.get('first_inference_seconds'), '{:.3f}')} | "
            f"{fmt(r.get('peak_rss_mb'), '{:.0f}')} | {r['size_bytes'] / 1e6:.1f} | {metric} |")
    ceilings = {}
    for r in fixed:
        ceilings[(r["threads"], r["ceiling_kind"])] = r["ceiling_gflops"]
    lines += ["", "GEMM ceiling (ONNX Runtime, 128x768x3072): " + ", ".join(
        f"{k} {t} thread(s) {v:.1f} GFLOP/s" for (t, k), v in sorted(ceilings.items()))]
    if real:
        r0 = real[0]
        lines += ["", f"Real inputs: {r0['texts']} validation texts of {(s.get('real_inputs') or {}).get('data')}, batch 1 "
                  f"at their own lengths (mean {r0['mean_tokens']:.1f} tokens, max {r0['max_tokens']}, truncated at "
                  f"{r0['truncated_at']}), {(s.get('real_inputs') or {}).get('passes')} passes interleaved per text; "
                  "tokenizer timed apart (fastest of the passes per text)", "",
                  "| variant | kind | threads | median ms | p90 ms | speedup | tokenizer median / p90 ms | with tokenizer median ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in real:
            sp = f"{r['speedup_vs_baseline']:.2f}x" if r.get("speedup_vs_baseline") else "-"
            lines.append(f"| {r['variant']} | {r['kind']} {r['precision']} | {r['threads']} | {r['median_ms']:.2f} | "
                         f"{r['p90_ms']:.2f} | {sp} | {r['tokenizer_median_ms']:.3f} / {r['tokenizer_p90_ms']:.3f} | "
                         f"{r['with_tokenizer_median_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def output_paths(output: Path) -> list[Path]:
    """The JSON report and the Markdown table beside it."""
    output = Path(output)
    if output.suffix != ".json":
        raise SensiEdgeError(f"--output {output} must be a .json file (the .md table is written beside it)")
    return [output, output.with_suffix(".md")]


def check_output(output: Path, overwrite: bool = False) -> None:
    """Call before measuring: a measurement is never taken only to find it cannot be saved."""
    from .outputs import check_writable

    check_writable(output_paths(output), overwrite)


def save(report: dict, output: Path, overwrite: bool = False) -> None:
    """Write OUTPUT.json and OUTPUT.md; if that fails after all, the measurement is kept in a temp file."""
    import tempfile

    from .outputs import MARK, write_text_atomic

    check_output(output, overwrite)
    json_path, md_path = output_paths(output)
    try:
        write_json_atomic(json_path, report)
        write_text_atomic(md_path, render_markdown(report) + "\n" + MARK + "\n")
    except OSError as exc:
        fd, keep = tempfile.mkstemp(prefix="sensi-edge-bench-", suffix=".json")
        with open(fd, "w") as fh:
            json.dump(report, fh, indent=2)
        raise SensiEdgeError(f"cannot write {output}: {exc.strerror}; the measurement is kept in {keep}") from None
