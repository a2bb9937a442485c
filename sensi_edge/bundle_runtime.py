#!/usr/bin/env python3
"""Latency measurement core that needs only numpy and onnxruntime.

``sensi-edge bench`` imports it; ``sensi-edge bundle`` copies this very file as ``run.py`` into a
device bundle, so a Raspberry Pi measures with exactly the code this machine used. Keep it free
of sensi_edge / torch / transformers imports.

As a script (inside a bundle):  python3 run.py [--threads 1 2 4] [--runs 100] [--seconds 10] [--out report.json]
(the GEMM ceiling graphs ship prebuilt in the bundle, so the device needs no onnx package); with real texts in
the bundle (bundle --texts-from) it also times them at their own lengths; ``python3 run.py --profile --threads 1``
measures a latency profile from the bundle's profile_models/ (bundle --profile-models) for the host's planner.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")
REPORT_SCHEMA = "sensi-edge/latency-report/1"


def cpu_info() -> dict:
    """CPU model and the ISA flags that decide int8/fp32 kernel speed."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and value.strip():
                model = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "isa": {f: f in flags for f in ISA_FLAGS}}


def environment() -> dict:
    import onnxruntime

    env = {"cpu": cpu_info(), "python": platform.python_version(), "platform": platform.platform(),
           "versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}}
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        env["load_average"] = None
    return env


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process, in MB.

    Linux: VmHWM from /proc/self/status, which starts afresh at exec. (getrusage's ru_maxrss does
    not: a child started from a large parent reports the parent's peak.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 if sys.platform != "darwin" else rss / 2**20
    except Exception:
        return None


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "runs": int(len(a))}


def ort_session(model, threads: int = 0, save_optimized=None):
    """The one way sensi-edge opens an ONNX model: evaluate, export's parity checks, bench, bundle, this
    script on the device and the GEMM ceiling all run the session they measure or score with the same
    options. ``model`` is a path or serialized bytes; ``threads`` 0 = onnxruntime's default (one per core);
    ``save_optimized``: also write the graph as ORT will run it (after its own optimizations) to that path."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # ORT ignores OMP_NUM_THREADS
    opts.inter_op_num_threads = 1
    # Idle worker threads must not spin: with variants interleaved, one session's spinning pool would
    # steal the cores the next variant is being timed on.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors reach the caller as exceptions; ORT's own log lines would double them
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    # An exported graph says how its residual LayerNorms run (onnx_graph.choose_layernorm): fused into
    # SkipLayerNormalization, or left as Add + LayerNormalization because that measured faster. ORT would
    # re-fuse the second at load time; this keeps each graph as exported.
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"], disabled_optimizers=["SkipLayerNormFusion"])


def ort_callable(session):
    names = [i.name for i in session.get_inputs()]

    def run(feed: dict):
        return session.run(None, {k: feed[k] for k in names})

    return run


def random_inputs(batch: int, seq_len: int, vocab: int = 1000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 1000 + vocab, size=(batch, seq_len), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def interleaved(variants: dict, feed: dict, warmup: int, min_runs: int, min_seconds: float, progress=None) -> dict:
    """Latency samples per variant, run in shuffled rounds so machine noise hits all alike.

    Stops when every variant has min_runs samples or min_seconds of measured time.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn(feed)
    samples = {name: [] for name in variants}
    spent = {name: 0.0 for name in variants}
    order = list(variants)
    rng = random.Random(0)
    while not all(len(samples[n]) >= min_runs or spent[n] >= min_seconds for n in order):
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            variants[name](feed)
            dt = time.perf_counter() - t0
            samples[name].append(dt * 1e3)
            spent[name] += dt
        if progress:
            progress(min(min(len(samples[n]) / min_runs, spent[n] / min_seconds) for n in order))
    return samples


def interleaved_rows(variants: dict, feeds: list, passes: int, warmup: int = 3) -> dict:
    """Real inputs: every row (batch 1, its own length) through every variant, variants in a shuffled order per
    row and rows shuffled per pass, so drift hits all variants alike. Returns one latency (ms) per variant per
    (pass, row)."""
    for fn in variants.values():
        for feed in feeds[:warmup]:
            fn(feed)
    samples = {name: [] for name in variants}
    rng = random.Random(0)
    order, rows = list(variants), list(range(len(feeds)))
    for _ in range(passes):
        rng.shuffle(rows)
        for i in rows:
            rng.shuffle(order)
            for name in order:
                t0 = time.perf_counter()
                variants[name](feeds[i])
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return samples


PROFILE_SCHEMA = "sensi-edge/latency-profile/1"
POINTS_FILE = "points.json"  # in a folder of profile models: [{"file", "heads", "ffn"}], written by sensi-edge profile


def fit_latency(points: list[dict]) -> dict:
    """Least-squares ``ms = fixed + per_head * sum(heads) + per_neuron * sum(ffn)`` over measured models of one
    depth, and how well it predicts: R^2 and the leave-one-out relative error (each point predicted by the fit
    of the others), the honest estimate of the planner's prediction error on a model it has not seen."""
    x = np.array([[1.0, sum(p["heads"]), sum(p["ffn"])] for p in points])
    y = np.array([p["median_ms"] for p in points])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    pred = x @ coef
    r2 = 1.0 - float(((y - pred) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-30))
    loo = []
    for i in range(len(points)):
        keep = np.arange(len(points)) != i
        c = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        loo.append(abs(float(x[i] @ c) - y[i]) / y[i])
    return {"fixed_ms": float(coef[0]), "per_head_ms": float(coef[1]), "per_neuron_ms": float(coef[2]), "r2": r2,
            "max_rel_residual": float(np.max(np.abs(pred - y) / y)),
            "loo_median_rel_error": float(np.median(loo)), "loo_max_rel_error": float(np.max(loo))}


def measure_profile(folder: Path, seq_len: int, threads: int, warmup: int = 5, runs: int = 50,
                    seconds: float = 1.0, progress=None) -> dict:
    """Latency of every profile model in ``folder`` (batch 1, ``seq_len`` tokens, ``threads`` intra-op threads),
    interleaved, and the linear fit the planner uses; the same on this machine and on a board."""
    folder = Path(folder)
    meta = json.loads((folder / POINTS_FILE).read_text())
    fns = {str(i): ort_callable(ort_session(folder / p["file"], threads)) for i, p in enumerate(meta["points"])}
    samples = interleaved(fns, random_inputs(1, seq_len, seed=2), warmup, runs, seconds, progress)
    points = [{"heads": p["heads"], "ffn": p["ffn"], **percentiles(samples[str(i)])} for i, p in enumerate(meta["points"])]
    return {"schema": PROFILE_SCHEMA, "environment": environment(), "threads": threads, "seq_len": seq_len,
            "batch": 1, "precision": meta["precision"], "geometry": meta["geometry"], "points": points,
            "fit": fit_latency(points)}


GEMM_SHAPE = (128, 768, 3072)  # one BERT-base FFN matmul at sequence length 128


def gemm_models(m: int = GEMM_SHAPE[0], k: int = GEMM_SHAPE[1], n: int = GEMM_SHAPE[2]) -> dict[str, bytes]:
    """The two ceiling graphs (fp32 MatMul, int8 MatMulInteger with constant weights); needs the onnx package.

    A bundle ships them prebuilt (gemm_fp32.onnx, gemm_int8.onnx), so devices need only onnxruntime.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    out = {}
    for kind in ("fp32", "int8"):
        if kind == "fp32":
            w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "W")
            node = helper.make_node("MatMul", ["A", "W"], ["Y"])
            a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        else:
            w = numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "W")
            node = helper.make_node("MatMulInteger", ["A", "W"], ["Y"])
            a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        graph = helper.make_graph([node], f"gemm_{kind}", [helper.make_tensor_value_info("A", a_type, [m, k])],
                                  [helper.make_tensor_value_info("Y", y_type, [m, n])], [w])
        out[kind] = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    return out


def gemm_ceiling(threads: int, min_seconds: float = 2.0, models: dict | None = None, min_runs: int = 20) -> dict:
    """Best (10th percentile) GFLOP/s of the fp32 and int8 ceiling graphs in ONNX Runtime on this CPU, in
    sessions opened like the timed variants' (no spinning), so the ceiling and the variants compare."""
    models = models or gemm_models()
    rng = np.random.default_rng(0)
    out = {}
    for kind, model in models.items():
        sess = ort_session(model, threads)
        shape = sess.get_inputs()[0].shape
        m, k = shape
        n = sess.get_outputs()[0].shape[1]
        a = (rng.standard_normal((m, k)).astype(np.float32) if kind == "fp32"
             else rng.integers(0, 255, (m, k), dtype=np.uint8))
        for _ in range(3):
            sess.run(None, {"A": a})
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < min_seconds or len(times) < min_runs:
            t0 = time.perf_counter()
            sess.run(None, {"A": a})
            times.append(time.perf_counter() - t0)
        out[kind] = {"gflops": 2.0 * m * k * n / float(np.percentile(times, 10)) / 1e9, "shape": [m, k, n]}
    return out


# ------------------------------------------------------------------ bundle script entry point
class BundleError(Exception):
    """A problem the person at the board can fix; printed as one ``error:`` line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints usage + exits 2; we want the one-line contract
        raise BundleError(f"{message}; see python3 run.py --help")


def _positive(kind, minimum, name):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (v >= minimum and v == v and v != float("inf")):  # NaN and inf fail
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {text}")
        return v
    return parse


def _read_manifest(here: Path) -> dict:
    try:
        manifest = json.loads((here / "manifest.json").read_text())
        for key in ("model", "samples", "outputs", "tolerance", "seq_len", "gemm"):
            manifest[key]
        return manifest
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{here / 'manifest.json'} is missing or damaged ({type(exc).__name__}); copy the whole "
                          "bundle folder again or recreate it with sensi-edge bundle") from None


def _check_out(out: Path, overwrite: bool, schema: str = REPORT_SCHEMA) -> None:
    """Refuse before measuring: never replace a file this script did not write, never lose a measurement."""
    if out.is_dir():
        raise BundleError(f"--out {out} is a folder; give a file name such as {out / 'report.json'}")
    if out.exists() and not overwrite:
        try:
            old = json.loads(out.read_text())
            ours = old.get("schema") == schema
            other_cpu = old.get("environment", {}).get("cpu", {}).get("model")
        except Exception:
            ours, other_cpu = False, None
        if not ours:
            raise BundleError(f"{out} exists and is not a report of this script; choose another --out or pass "
                              "--overwrite")
        if other_cpu and other_cpu != cpu_info().get("model"):  # a bundle copied on from another board
            raise BundleError(f"{out} holds measurements of another device ({other_cpu}); choose another --out "
                              "(e.g. --out report-$(hostname).json) or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BundleError(f"cannot write {out} ({exc.strerror}); choose a writable --out") from None


def _bundle_main(argv=None) -> int:
    try:
        return _bundle_run(argv)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing was written, rerun it", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an onnxruntime failure mid-measurement: still one line
        print(f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}; "
              "rerun, and report it with this bundle's manifest.json if it persists", file=sys.stderr)
        return 2


def _bundle_run(argv=None) -> int:
    """run.py's main: check the model's outputs against the host's, then time it (or measure a profile)."""
    here = Path(__file__).resolve().parent
    manifest = _read_manifest(here)
    args = _run_args(here, manifest, argv)
    if args.profile:
        return _run_profile(here, manifest, args)
    model = here / manifest["model"]
    samples, feed = _samples(here, manifest, model)
    t0 = time.perf_counter()
    try:
        session = ort_session(model, args.threads[0])
    except Exception as exc:
        raise BundleError(f"onnxruntime cannot load {model} ({str(exc).splitlines()[0][:120]}); copy the bundle "
                          "again, or install an onnxruntime that supports its opset") from None
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outputs = ort_callable(session)(feed)
    first_s = time.perf_counter() - t0
    ok, check = _output_check(manifest, samples, outputs)
    print(f"output check: {'OK' if ok else 'FAILED'} {json.dumps(check)}")
    report = {"schema": REPORT_SCHEMA, "source": "bundle", "environment": environment(), "output_check": {"ok": ok, **check},
              "results": []}
    if not args.check_only and ok:
        for threads in args.threads:
            report["results"] += _timed(here, manifest, model, threads, args, load_s, first_s)
    _write_report(args.out, report)
    print(f"report: {args.out}")
    return 0 if ok else 1


def _run_args(here: Path, manifest: dict, argv):
    ap = _Parser(description="Check and benchmark this sensi-edge bundle with onnxruntime.")
    ap.add_argument("--threads", type=_positive(int, 1, "--threads"), nargs="+", default=manifest.get("threads", [1]))
    ap.add_argument("--runs", type=_positive(int, 1, "--runs"), default=100)
    ap.add_argument("--seconds", type=_positive(float, 0.001, "--seconds"), default=10.0)
    ap.add_argument("--warmup", type=_positive(int, 0, "--warmup"), default=10)
    ap.add_argument("--out", type=Path, default=None, help="[default: report.json, or profile.json with --profile]")
    ap.add_argument("--profile", action="store_true",
                    help="measure a latency profile (the bundle's profile_models/) instead; plan with it on the host: "
                         "sensi-edge compress --budget-kind latency --latency-profile profile.json")
    ap.add_argument("--profile-seq-len", type=_positive(int, 8, "--profile-seq-len"), default=None,
                    help="tokens per sequence of the profile [default: the bundle's seq_len]")
    ap.add_argument("--overwrite", action="store_true", help="replace --out even if this script did not write it")
    ap.add_argument("--check-only", action="store_true", help="verify outputs and exit")
    ap.add_argument("--ceiling-seconds", type=_positive(float, 0.001, "--ceiling-seconds"), default=1.0,
                    help="time per GEMM ceiling measurement")
    ap.add_argument("--ceiling-runs", type=_positive(int, 1, "--ceiling-runs"), default=20,
                    help="minimum runs per GEMM ceiling measurement")
    args = ap.parse_args(argv)
    args.out = args.out or here / ("profile.json" if args.profile else "report.json")
    if any(t < 1 or t > 256 for t in args.threads):
        raise BundleError(f"--threads must be between 1 and 256, got {args.threads} (check manifest.json's threads)")
    args.out = args.out.resolve()
    if args.out in {(here / n).resolve() for n in ("manifest.json", manifest["model"], manifest["samples"], "run.py")}:
        raise BundleError(f"--out {args.out} is one of the bundle's own files; choose another --out")
    _check_out(args.out, args.overwrite, PROFILE_SCHEMA if args.profile else REPORT_SCHEMA)
    return args


def _samples(here: Path, manifest: dict, model: Path):
    """The host's sample inputs and expected outputs, shipped in the bundle."""
    for f in (model, here / manifest["samples"]):
        if not f.is_file():
            raise BundleError(f"{f} is missing from the bundle; copy the whole bundle folder again")
    try:
        samples = np.load(here / manifest["samples"])
        return samples, {k: samples[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    except Exception as exc:
        raise BundleError(f"{here / manifest['samples']} is damaged ({type(exc).__name__}); copy the bundle again") from None


def _output_check(manifest: dict, samples, outputs) -> tuple[bool, dict]:
    """Every output against the host's: max |diff| and argmax agreement, within the manifest's tolerance."""
    check = {}
    for name, got in zip(manifest["outputs"], outputs):
        want = samples[f"expected_{name}"]
        check[name] = {"max_abs_diff": float(np.abs(got - want).max()),
                       "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean())}
    tol = manifest["tolerance"]
    ok = all(c["max_abs_diff"] <= tol["max_abs_diff"] and c["argmax_agreement"] >= tol["argmax_agreement"]
             for c in check.values())
    return ok, check


def _timed(here: Path, manifest: dict, model: Path, threads: int, args, load_s: float, first_s: float) -> list[dict]:
    """Fixed-length latency at ``threads`` against the GEMM ceiling, plus real inputs when the bundle ships them."""
    seq = manifest["seq_len"]
    fn = ort_callable(ort_session(model, threads))
    lat = interleaved({manifest["name"]: fn}, random_inputs(manifest.get("batch", 1), seq, seed=1),
                      args.warmup, args.runs, args.seconds)[manifest["name"]]
    ceiling = gemm_ceiling(threads, args.ceiling_seconds, {k: here / f for k, f in manifest["gemm"].items()},
                           args.ceiling_runs)
    stats = percentiles(lat)
    flops = manifest.get("flops")
    kind = "int8" if manifest.get("int8") else "fp32"
    gflops = flops / (stats["median_ms"] / 1e3) / 1e9 if flops else None
    out = [{
        "variant": manifest["name"], "kind": "onnx", "precision": kind, "threads": threads,
        "batch": manifest.get("batch", 1), "head": "qa" if "start_logits" in manifest["outputs"] else "classification",
        "seq_len": seq, **stats, "load_seconds": load_s, "first_inference_seconds": first_s,
        "peak_rss_mb": peak_rss_mb(), "flops": flops, "achieved_gflops": gflops,
        "ceiling_gflops": ceiling[kind]["gflops"], "ceiling_kind": kind,
        "pct_of_ceiling": (100 * gflops / ceiling[kind]["gflops"]) if gflops else None,
        "size_bytes": model.stat().st_size, "metric": manifest.get("metric"),
    }]
    print(f"threads {threads}: median {stats['median_ms']:.2f} ms, p90 {stats['p90_ms']:.2f} ms")
    if manifest.get("real_inputs"):
        out.append(_real_input_result(here, manifest, fn, threads, model))
    return out


def _run_profile(here: Path, manifest: dict, args) -> int:
    folder = here / manifest.get("profile_models", "profile_models")
    if not (folder / POINTS_FILE).is_file():
        raise BundleError("this bundle has no profile models; recreate it with sensi-edge bundle --profile-models DIR "
                          "(DIR from sensi-edge profile --keep-models DIR)")
    seq = args.profile_seq_len or manifest["seq_len"]
    print(f"profile: timing the models in {folder.name}/ at {seq} tokens, {args.threads[0]} thread(s)")
    result = measure_profile(folder, seq, args.threads[0], args.warmup, args.runs, args.seconds)
    f = result["fit"]
    print(f"fit: {f['fixed_ms']:.3f} ms + {f['per_head_ms'] * 1e3:.2f} us/head + {f['per_neuron_ms'] * 1e3:.3f} us/neuron; "
          f"leave-one-out error max {f['loo_max_rel_error']:.1%}")
    _write_report(args.out, result)
    print(f"profile: {args.out}")
    return 0


def _real_input_result(here: Path, manifest: dict, fn, threads: int, model: Path) -> dict:
    """The shipped validation texts through the model at their own lengths (2 passes), and the tokenizer's time
    per text where the tokenizers package is installed (None otherwise)."""
    real = manifest["real_inputs"]
    data = np.load(here / real["ids"])
    ends = np.cumsum(data["lengths"])
    feeds = [{k: data[k][e - n:e][None, :] for k in ("input_ids", "attention_mask", "token_type_ids")}
             for n, e in zip(data["lengths"], ends)]
    stats = percentiles(interleaved_rows({"m": fn}, feeds, 2)["m"])
    tok = None
    try:
        from tokenizers import Tokenizer

        t = Tokenizer.from_file(str(here / manifest["tokenizer"])) if manifest.get("tokenizer") else None
    except Exception:  # no tokenizers package on the board: the model's own latency still counts
        t = None
    if t is not None:
        texts = json.loads((here / real["texts"]).read_text())
        times = []
        for row in texts:
            t0 = time.perf_counter()
            t.encode(*row)
            times.append((time.perf_counter() - t0) * 1e3)
        tok = percentiles(times)
    print(f"threads {threads}, {len(feeds)} real texts (mean {float(data['lengths'].mean()):.1f} tokens): median "
          f"{stats['median_ms']:.2f} ms, p90 {stats['p90_ms']:.2f} ms")
    return {"variant": manifest["name"], "kind": "onnx", "precision": "int8" if manifest.get("int8") else "fp32",
            "threads": threads, "batch": 1, "seq_len": None, "inputs": "real", "texts": len(feeds),
            "mean_tokens": float(data["lengths"].mean()), "max_tokens": int(data["lengths"].max()),
            "truncated_at": real["truncated_at"], **stats,
            "tokenizer_median_ms": tok["median_ms"] if tok else None, "tokenizer_p90_ms": tok["p90_ms"] if tok else None,
            "with_tokenizer_median_ms": stats["median_ms"] + tok["median_ms"] if tok else None,
            "size_bytes": model.stat().st_size, "metric": manifest.get("metric"),
            "head": "qa" if "start_logits" in manifest["outputs"] else "classification"}


def _write_report(out: Path, report: dict) -> None:
    text = json.dumps(report, indent=2) + "\n"
    try:
        tmp = out.parent / f".{out.name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out)
    except OSError as exc:  # checked before measuring, but a disk can fill up meanwhile: keep the numbers
        import tempfile

        fd, keep = tempfile.mkstemp(prefix="sensi-edge-report-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        raise BundleError(f"cannot write {out} ({exc.strerror}); the measurement is kept in {keep}") from None


if __name__ == "__main__":
    sys.exit(_bundle_main())
