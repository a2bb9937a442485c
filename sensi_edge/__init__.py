"""sensi-edge: sensitivity-driven trimming of BERT models into smaller, fast ONNX models for edge CPUs.

The public API, one call per pipeline stage (the CLI is a thin layer over these)::

    from sensi_edge import CompressConfig, ExportConfig, BenchConfig, Recipe
    from sensi_edge import compress, export, evaluate, bench, bundle

    run = compress(CompressConfig(task="sst2", data="../shared/data/rt-polarity", output="runs/rt"))
    onnx = export(ExportConfig(run.output / "model", "runs/rt-onnx", quantize=("dynamic",)))
    print(evaluate(onnx.output / "model_int8_dynamic.onnx", "sst2", "../shared/data/rt-polarity"))
    latency = bench(BenchConfig((onnx.output / "model_int8_dynamic.onnx",), threads=(1,)))  # a report dict
    bundle(onnx.output / "model_int8_dynamic.onnx", "runs/bundle")

The functions share their modules' names (``sensi_edge.compress`` is the function; its module is
``sensi_edge.compress`` in ``sys.modules``, reached with ``from sensi_edge.compress import ...``), so they
are bound here eagerly: a lazy attribute would be shadowed by the submodule the first time anything
imported it. The device bundle's runtime does not come through this package (it is copied as run.py).
"""
from __future__ import annotations

from .bench import BenchConfig, bench  # interleaved latency, medians and p90, threads stated
from .bundle import bundle  # a folder a device runs with onnxruntime + numpy only
from .compress import CompressConfig, compress  # fine-tune, analyse, plan, trim while fine-tuning, remove, report
from .errors import SensiEdgeError
from .export import ExportConfig, export  # ONNX fp32 + int8, each graph step checked against PyTorch
from .finetune import Recipe
from .scoring import evaluate_path as evaluate  # the task metric of a model folder or an .onnx file

__version__ = "0.1.0"
__all__ = ["BenchConfig", "CompressConfig", "ExportConfig", "Recipe", "SensiEdgeError", "bench", "bundle",
           "compress", "evaluate", "export", "__version__"]
