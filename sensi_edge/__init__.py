"""sensi-edge: sensitivity-driven trimming of BERT models into smaller, fast ONNX models for edge CPUs.

The public API, one call per pipeline stage (the CLI is a thin layer over these)::

    from sensi_edge import CompressConfig, ExportConfig, BenchConfig, Recipe
    from sensi_edge import compress, export, evaluate, bench, bundle, profile

    run = compress(CompressConfig(task="sst2", data="../shared/data/rt-polarity", output="runs/rt"))
    onnx = export(ExportConfig(run.output / "model", "runs/rt-onnx", quantize=("dynamic",)))
    print(evaluate(onnx.output / "model_int8_dynamic.onnx", "sst2", "../shared/data/rt-polarity"))
    latency = bench(BenchConfig((onnx.output / "model_int8_dynamic.onnx",), threads=(1,)))  # a report dict
    bundle(onnx.output / "model_int8_dynamic.onnx", "runs/bundle")

Names resolve lazily (PEP 562), so ``import sensi_edge`` (and every ``sensi_edge.X`` import, such as the
fresh process bench uses to measure an ONNX model's load time and memory) loads neither torch nor
transformers. Four functions share their module's name; the import system would overwrite
``sensi_edge.compress`` with the module the first time anything imported it, so the package keeps the
function under that name (``from sensi_edge.compress import CompressConfig`` still reaches the module).
"""
from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_API = {
    "compress": ("compress", "compress"),  # fine-tune, analyse, plan, trim while fine-tuning, remove, report
    "CompressConfig": ("compress", "CompressConfig"),
    "Recipe": ("finetune", "Recipe"),
    "export": ("export", "export"),  # ONNX fp32 + int8, each graph step checked against PyTorch
    "ExportConfig": ("export", "ExportConfig"),
    "evaluate": ("tasks.scoring", "evaluate_path"),  # the task metric of a model folder or an .onnx file
    "bench": ("bench", "bench"),  # interleaved latency, medians and p90, threads stated
    "BenchConfig": ("bench", "BenchConfig"),
    "bundle": ("bundle", "bundle"),  # a folder a device runs with onnxruntime + numpy only
    "profile": ("latency", "profile"),  # what a head and a neuron cost on this CPU: the latency budget's table
    "ProfileConfig": ("latency", "ProfileConfig"),
    "SensiEdgeError": ("errors", "SensiEdgeError"),
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'sensi_edge' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module: binding a submodule over an API name (what ``import sensi_edge.compress``
    does) is ignored, so ``sensi_edge.compress`` stays the function."""

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
