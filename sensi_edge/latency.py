"""Latency profiles: what one attention head and one FFN neuron cost, in milliseconds, on a target CPU.

``sensi-edge profile`` builds a set of models with the base model's depth and widths but irregular
per-layer head counts and FFN widths (random weights, a 2,100-token vocabulary so the files stay small;
an embedding lookup costs the same whatever the vocabulary), exports each the way ``export`` does
(fused, int8 dynamic or fp32), times them interleaved at batch 1 with ONNX Runtime and fits

    ms per sequence = fixed + per_head * (heads kept, all layers) + per_neuron * (neurons kept, all layers)

``fixed`` holds embeddings, LayerNorms, the task head and the session's own overhead. A linear model is
what the planner's greedy fill can meet exactly; how well it predicts is measured, not assumed: the
profile stores R^2 and the leave-one-out error (each model predicted by the fit of the others). The
timing and the fit are ``bundle_runtime.measure_profile``, the code a board runs from its bundle
(``run.py --profile``), so a profile measured on the board has the same format.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifacts import write_json_atomic
from .options import option
from .bundle_runtime import POINTS_FILE, PROFILE_SCHEMA, measure_profile
from .cost import Geometry
from .errors import SensiEdgeError

PROFILE_VOCAB = 2100  # bundle_runtime.random_inputs draws ids below 2000


@dataclass(frozen=True)
class LatencyModel:
    """The fitted line of a profile, in the integer picoseconds the planner counts in."""

    fixed_ms: float
    per_head_ms: float
    per_neuron_ms: float
    seq_len: int
    threads: int
    precision: str
    geometry: Geometry  # the dense model the profile was measured for (depth and widths)
    cpu: str = ""
    source: str = ""

    def unit_ps(self, kind: str) -> int:
        return int(round((self.per_head_ms if kind == "attention" else self.per_neuron_ms) * 1e9))

    def cost_ps(self, g: Geometry) -> int:
        return int(round(self.fixed_ms * 1e9)) + self.unit_ps("attention") * sum(g.heads) + self.unit_ps("ffn") * sum(g.ffn)

    def predict_ms(self, g: Geometry) -> float:
        return self.cost_ps(g) / 1e9

    def to_dict(self) -> dict:
        return {"fixed_ms": self.fixed_ms, "per_head_ms": self.per_head_ms, "per_neuron_ms": self.per_neuron_ms,
                "seq_len": self.seq_len, "threads": self.threads, "precision": self.precision, "cpu": self.cpu,
                "source": self.source}

    def check_fits(self, dense: Geometry) -> None:
        """A profile measured for another depth or width predicts nothing about this model."""
        g = self.geometry
        if (g.hidden, g.head_dim, g.num_layers) != (dense.hidden, dense.head_dim, dense.num_layers):
            raise SensiEdgeError(
                f"the latency profile {self.source} was measured for {g.num_layers} layers of hidden size {g.hidden} "
                f"(head width {g.head_dim}); this model has {dense.num_layers} layers of hidden size {dense.hidden}: "
                "run `sensi-edge profile --model` with this model")


def load_profile(path) -> LatencyModel:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise SensiEdgeError(f"latency profile {path} does not exist; make one with `sensi-edge profile --output "
                             f"{path}` on the target") from None
    except (OSError, ValueError) as exc:
        raise SensiEdgeError(f"latency profile {path} is not readable JSON ({type(exc).__name__}); make it again "
                             "with `sensi-edge profile`") from None
    if not isinstance(d, dict) or d.get("schema") != PROFILE_SCHEMA:
        raise SensiEdgeError(f"{path} is not a sensi-edge latency profile (schema {PROFILE_SCHEMA}); make one with "
                             "`sensi-edge profile`")
    try:
        fit, g = d["fit"], d["geometry"]
        model = LatencyModel(float(fit["fixed_ms"]), float(fit["per_head_ms"]), float(fit["per_neuron_ms"]),
                             int(d["seq_len"]), int(d["threads"]), str(d["precision"]), Geometry.from_dict(g),
                             d.get("environment", {}).get("cpu", {}).get("model", ""), str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise SensiEdgeError(f"latency profile {path} is damaged (missing {exc}); make it again") from None
    if not (model.per_head_ms > 0 and model.per_neuron_ms > 0):
        raise SensiEdgeError(f"latency profile {path} gives a head {model.per_head_ms:.2e} ms and a neuron "
                             f"{model.per_neuron_ms:.2e} ms: not both positive, so its timings were noise; measure "
                             "again on a quiet machine with more --seconds")
    return model


def profile_geometries(dense: Geometry, n: int, seed: int = 0) -> list[Geometry]:
    """The dense model, a nearly empty one (1 head and 1/24 of the neurons per layer) and n - 2 random irregular
    ones in between: the range a plan can land in, with per-layer sizes as uneven as plans make them."""
    if n < 4:
        raise SensiEdgeError(f"--points must be >= 4 (a line through 3 unknowns needs a spare point), got {n}")
    rnd = random.Random(seed)
    out = [dense, dense.with_sizes([1] * dense.num_layers, [max(1, f // 24) for f in dense.ffn])]
    while len(out) < n:
        share = rnd.uniform(0.1, 0.9)  # a budget; layers spread around it
        heads = [max(1, min(h, round(h * rnd.uniform(share / 2, min(1.0, share * 1.5))))) for h in dense.heads]
        ffn = [max(1, min(f, round(f * rnd.uniform(share / 2, min(1.0, share * 1.5))))) for f in dense.ffn]
        out.append(dense.with_sizes(heads, ffn))
    return out


def _distinct_norms(model) -> None:
    """Give every LayerNorm its own scale and shift, as a trained model has. Freshly initialised ones are all
    ones and zeros: the exporter then shares one initializer among them and the int8 quantizer (quantizing the
    embedding LayerNorm's) puts a DequantizeLinear in front of every LayerNorm -- 37 run-time nodes in a MiniLM
    profile model that no real export has (ORT's profiler: 0.23-0.32 ms per sequence at 27 tokens, 1 thread, on a
    loaded machine), charged to the profile's fixed cost."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(torch.randn_like(module.weight) * 0.02)
                module.bias.add_(torch.randn_like(module.bias) * 0.02)


def build_point_models(model_spec: str, folder: Path, n_points: int, precision: str, log=print,
                       layernorm: str = "auto", seq_len: int = 128) -> Geometry:
    """Export one ONNX model per profile geometry into ``folder`` (plus points.json); returns the dense geometry.
    The residual-LayerNorm form is chosen once, on the dense point, as ``export`` would choose it on this machine."""
    import torch

    from .arch import adapter_for
    from .loading import load_config
    from .modeling import SensiBertConfig, SensiBertForSequenceClassification
    from .onnx_graph import choose_layernorm, export_model, fuse
    from .quantize import detect_preset, quantize_dynamic_int8

    base = load_config(model_spec)
    dense = adapter_for(base).geometry_from_config(base)
    folder.mkdir(parents=True, exist_ok=True)
    preset = detect_preset()
    points = []
    for i, g in enumerate(profile_geometries(dense, n_points)):
        cfg = SensiBertConfig(**{**base.to_dict(), "vocab_size": PROFILE_VOCAB, "num_labels": 2,
                                 "layer_num_heads": list(g.heads), "layer_intermediate_sizes": list(g.ffn)})
        torch.manual_seed(i)
        model = SensiBertForSequenceClassification(cfg).eval()
        _distinct_norms(model)
        unfused, fused = folder / f"p{i}_unfused.onnx", folder / f"p{i}_fp32.onnx"
        export_model(model, unfused)
        if i == 0:
            ln = choose_layernorm(unfused, seq_len, layernorm)
        fuse(unfused, fused, skip_layer_norm=ln["mode"] == "skip")
        unfused.unlink()
        name = fused.name
        if precision == "int8":
            quantize_dynamic_int8(fused, folder / f"p{i}_int8.onnx", preset)
            fused.unlink()
            name = f"p{i}_int8.onnx"
        points.append({"file": name, "heads": list(g.heads), "ffn": list(g.ffn)})
        log(f"profile model {i + 1}/{n_points}: {sum(g.heads)} heads, {sum(g.ffn)} neurons")
    (folder / POINTS_FILE).write_text(json.dumps({"precision": precision, "geometry": dense.to_dict(), "layernorm": ln,
                                                  "quantization": preset.to_dict() if precision == "int8" else None,
                                                  "points": points}, indent=2) + "\n")
    return dense


@dataclass(frozen=True)
class ProfileConfig:
    """Every setting of a latency profile; each field's help is the CLI's (``cli/generate.py`` builds the flags)."""

    output: Path = option(help="the latency profile (JSON) to write")
    model: str | None = option(None, help="the base model whose depth and widths to profile",
                               show_default="packaged all-MiniLM-L6-v2")
    threads: int = option(1, help="ONNX Runtime intra-op threads (plan for the threads the target will use)")
    seq_len: int = option(128, help="tokens per sequence the latency is predicted for")
    precision: str = option("int8", choices=("int8", "fp32"), help="int8 (dynamic, what export makes) | fp32")
    points: int = option(12, help="irregular models timed for the fit (dense and nearly empty included)")
    seconds: float = option(1.0, help="measured time per model (at least 50 runs each)")
    keep_models: Path | None = option(None, help="keep the profile's ONNX models in this new folder (bundle them for a "
                                                 "board)")
    overwrite: bool = option(False, help="replace an existing --output")
    # the residual-LayerNorm form export will use (onnx_graph.choose_layernorm)
    layernorm: str = option("auto", choices=("auto", "skip", "split"),
                            help="residual LayerNorms as export makes them: auto (faster form here) | skip | split")

    def __post_init__(self):
        from . import checks

        checks.at_least("--threads", self.threads, optional=False)
        checks.threads("--threads", self.threads)
        checks.at_least("--points", self.points, 4, optional=False)
        checks.seq_len("--seq-len", self.seq_len, optional=False)
        checks.in_range("--seconds", self.seconds, 0, 600, lo_open=True)
        if self.precision not in ("int8", "fp32"):
            raise SensiEdgeError(f"unknown --precision {self.precision!r}: use int8 or fp32")
        from .onnx_graph import LAYERNORM_MODES

        if self.layernorm not in LAYERNORM_MODES:
            raise SensiEdgeError(f"unknown --layernorm {self.layernorm!r}: use {', '.join(LAYERNORM_MODES)}")


def profile(cfg: ProfileConfig, log=print) -> dict:
    """Build, time and fit; writes cfg.output (atomically) and returns the profile."""
    from .loading import load_config, resolve_model
    from .outputs import check_writable

    output = Path(cfg.output).expanduser()
    check_writable([output], cfg.overwrite)
    keep = Path(cfg.keep_models).expanduser() if cfg.keep_models else None
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise SensiEdgeError(f"--keep-models {keep} is not empty; choose a new folder")
    spec = resolve_model(cfg.model)
    from . import checks

    checks.seq_len("--seq-len", cfg.seq_len, getattr(load_config(spec), "max_position_embeddings", None))
    with tempfile.TemporaryDirectory(prefix="sensi-edge-profile-") as tmp:
        folder = Path(tmp) / "models"
        build_point_models(spec, folder, cfg.points, cfg.precision, log, cfg.layernorm, cfg.seq_len)
        log(f"timing {cfg.points} models at {cfg.seq_len} tokens, {cfg.threads} thread(s), interleaved")
        from rich.progress import Progress

        with Progress(transient=True) as progress:  # the timing takes points x seconds: show how far it is
            bar = progress.add_task("profile timing", total=1.0)
            result = measure_profile(folder, cfg.seq_len, cfg.threads, runs=50, seconds=cfg.seconds,
                                     progress=lambda f: progress.update(bar, completed=f))
        result["model"] = spec
        result["layernorm"] = json.loads((folder / POINTS_FILE).read_text())["layernorm"]
        result["command_settings"] = {"points": cfg.points, "seconds": cfg.seconds}
        if keep is not None:
            shutil.copytree(folder, keep, dirs_exist_ok=True)
    write_json_atomic(output, result)
    fit = result["fit"]
    log(f"fit: {fit['fixed_ms']:.3f} ms + {fit['per_head_ms'] * 1e3:.2f} us/head + {fit['per_neuron_ms'] * 1e3:.3f} "
        f"us/neuron; R^2 {fit['r2']:.4f}, leave-one-out error median {fit['loo_median_rel_error']:.1%}, max "
        f"{fit['loo_max_rel_error']:.1%}")
    return result
