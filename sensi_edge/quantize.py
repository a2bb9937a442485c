"""int8 variants of an ONNX model, with settings chosen for the CPU that will run them.

Dynamic quantization runs on the fused graph (QAttention, MatMulInteger, quantized embeddings).
Static quantization (QDQ, MatMul only, calibrated on training rows) runs on the *unfused* graph:
on the fused one the contrib ops hide activations from calibration and it degrades to
weight-only. Presets per ISA follow ORT's guidance: QInt8 weights saturate the u8 x s8
multiply-add (VPMADDUBSW) on AVX2 without VNNI, so those CPUs get reduce_range (7-bit weights).
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from .onnx_graph import in_tempdir, restore_unused_inputs


@dataclass(frozen=True)
class QuantPreset:
    name: str
    weight_type: str = "qint8"  # qint8 | quint8
    per_channel: bool = True
    reduce_range: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "vnni": QuantPreset("vnni"),  # AVX512-VNNI / AVX-VNNI / AMX: s8 weights at full range
    "avx2": QuantPreset("avx2", reduce_range=True),  # no VNNI: 7-bit weights avoid saturation
    "avx512": QuantPreset("avx512", reduce_range=True),
    "arm64": QuantPreset("arm64"),  # NEON / dotprod kernels have no saturation issue
}


def cpu_info_flags() -> set[str]:
    """The ISA flags that decide int8 kernels (from bundle_runtime, which devices run too)."""
    from .bundle_runtime import cpu_info

    return {name for name, present in cpu_info()["isa"].items() if present}


def detect_preset() -> QuantPreset:
    flags = cpu_info_flags()
    if platform.machine().lower() in ("aarch64", "arm64"):
        return PRESETS["arm64"]
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return PRESETS["vnni"]
    if "avx512f" in flags:
        return PRESETS["avx512"]
    return PRESETS["avx2"]


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


def quantize_dynamic_int8(src: Path, dst: Path, preset: QuantPreset) -> None:
    from onnxruntime.quantization import quantize_dynamic

    src, dst = Path(src).resolve(), Path(dst).resolve()
    with in_tempdir():
        quantize_dynamic(str(src), str(dst), weight_type=_qtype(preset.weight_type), per_channel=preset.per_channel,
                         reduce_range=preset.reduce_range,
                         # the fused graph's contrib ops carry no type info; without this quantize_dynamic fails
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    restore_unused_inputs(dst)


def quantize_static_int8(src_unfused: Path, dst: Path, calibration: list[dict], preset: QuantPreset) -> None:
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {k: np.asarray(v, dtype=np.int64) for k, v in batch.items()}

    src, dst = Path(src_unfused).resolve(), Path(dst).resolve()
    with in_tempdir() as tmp:
        pre = tmp / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                        activation_type=QuantType.QInt8, weight_type=_qtype(preset.weight_type),
                        per_channel=preset.per_channel, reduce_range=preset.reduce_range,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    restore_unused_inputs(dst)
