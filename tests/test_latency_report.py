"""The typed view of bench / run.py latency reports that ``report`` reads."""
import json

import pytest

from sensi_edge.bundle_runtime import REPORT_SCHEMA
from sensi_edge.errors import SensiEdgeError
from sensi_edge.latency_report import read_latency_report
from sensi_edge.report import merge


def _report(*rows):
    return {"schema": REPORT_SCHEMA, "source": "bench", "environment": {"cpu": {"model": "cpu X", "machine": "x86_64"}},
            "results": list(rows)}


FIXED = {"variant": "onnx/model_int8", "kind": "onnx", "precision": "int8", "threads": 1, "seq_len": 128,
         "median_ms": 5.0, "p90_ms": 5.5, "size_bytes": 16_000_000, "metric": {"name": "accuracy", "value": 81.2},
         "speedup_vs_baseline": 2.5}
REAL = {"variant": "pytorch/dense", "kind": "pytorch", "threads": 2, "inputs": "real", "mean_tokens": 27.6,
        "median_ms": 20.0, "p90_ms": 30.0, "size_bytes": 90_000_000, "metric": None, "speedup_vs_baseline": None}


def test_rows_are_typed_fixed_and_real_lengths(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(_report(FIXED, REAL)))
    r = read_latency_report(tmp_path / "r.json")
    assert r.device == "cpu X (x86_64)"
    fixed, real = r.rows
    assert (fixed.seq_len, fixed.mean_tokens, fixed.metric_value, fixed.kind_label) == (128, None, 81.2, "onnx int8")
    assert real.real_inputs and real.seq_len is None and real.mean_tokens == 27.6 and real.metric_name is None
    assert real.kind_label == "pytorch"  # no precision written: no trailing blank


@pytest.mark.parametrize("field, value", [("median_ms", float("nan")), ("p90_ms", "5"), ("threads", True),
                                          ("variant", 3), ("metric", {"name": "accuracy"})])
def test_a_bad_field_is_named(tmp_path, field, value):
    (tmp_path / "r.json").write_text(json.dumps(_report({**FIXED, field: value}), allow_nan=True))
    with pytest.raises(SensiEdgeError, match=rf"results\[0\]\.{field}"):
        read_latency_report(tmp_path / "r.json")


def test_real_row_needs_mean_tokens_not_seq_len(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(_report({k: v for k, v in REAL.items() if k != "mean_tokens"})))
    with pytest.raises(SensiEdgeError, match="mean_tokens"):
        read_latency_report(tmp_path / "r.json")


def test_merged_table_sorts_by_device_threads_latency(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_report(REAL, FIXED, {**FIXED, "median_ms": 3.0, "variant": "fast"})))
    md, png = merge([tmp_path / "a.json"], tmp_path / "merged")
    body = [line for line in md.read_text().splitlines() if line.startswith("| cpu X")]
    assert [line.split(" | ")[1] for line in body] == ["fast", "onnx/model_int8", "pytorch/dense"]
    assert "| real 28 tok |" in body[2] and "| 2.50x |" in body[1] and "accuracy 81.20" in body[1]
    assert png.stat().st_size > 0
