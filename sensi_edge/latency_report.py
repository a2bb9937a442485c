"""The latency report that ``bench`` and a board's ``run.py`` write, read back as types.

The writers stay dict-based on purpose: run.py runs on a board with onnxruntime + numpy only, so it cannot
import this package. Every reader on the host (``report`` today) goes through :func:`read_latency_report`,
which checks each field it hands on and names the first bad one, so a hand-edited or foreign file fails with
one line instead of a KeyError inside the table code."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .artifacts import _read_json
from .bundle_runtime import REPORT_SCHEMA
from .errors import SensiEdgeError


@dataclass(frozen=True)
class LatencyRow:
    """One measured variant: fixed-length rows have ``seq_len``, real-input rows ``mean_tokens`` instead."""

    variant: str
    kind: str  # "onnx" / "pytorch"
    precision: str  # "" where the writer did not say
    threads: int
    median_ms: float
    p90_ms: float
    size_bytes: int
    seq_len: int | None  # None for real inputs (their own lengths)
    mean_tokens: float | None  # real inputs only
    metric_name: str | None
    metric_value: float | None
    speedup_vs_baseline: float | None

    @property
    def real_inputs(self) -> bool:
        return self.seq_len is None

    @property
    def kind_label(self) -> str:
        return f"{self.kind} {self.precision}".strip()


@dataclass(frozen=True)
class LatencyReport:
    """A report's device (the CPU model and machine it ran on) and its rows."""

    path: str
    cpu_model: str
    machine: str
    rows: tuple[LatencyRow, ...]

    @property
    def device(self) -> str:
        return f"{self.cpu_model} ({self.machine})"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _row(i: int, row, bad) -> LatencyRow:
    if not isinstance(row, dict):
        raise bad(f"results[{i}] is not an object")
    real = row.get("inputs") == "real"
    numbers = ("median_ms", "p90_ms", "threads", "mean_tokens" if real else "seq_len", "size_bytes")
    for key in numbers:
        if not _number(row.get(key)):
            raise bad(f"results[{i}].{key} is {row.get(key)!r}, not a number")
    for key in ("variant", "kind"):
        if not isinstance(row.get(key), str):
            raise bad(f"results[{i}].{key} is {row.get(key)!r}, not a string")
    m = row.get("metric")
    if m is not None and not (isinstance(m, dict) and isinstance(m.get("name"), str) and _number(m.get("value"))):
        raise bad(f"results[{i}].metric is {m!r}; expected {{'name': ..., 'value': number}}")
    s = row.get("speedup_vs_baseline")
    if s is not None and not _number(s):
        raise bad(f"results[{i}].speedup_vs_baseline is {s!r}, not a number")
    return LatencyRow(variant=row["variant"], kind=row["kind"], precision=str(row.get("precision") or ""),
                      threads=int(row["threads"]), median_ms=float(row["median_ms"]), p90_ms=float(row["p90_ms"]),
                      size_bytes=int(row["size_bytes"]), seq_len=None if real else int(row["seq_len"]),
                      mean_tokens=float(row["mean_tokens"]) if real else None,
                      metric_name=m["name"] if m else None, metric_value=float(m["value"]) if m else None,
                      speedup_vs_baseline=float(s) if s else None)


def read_latency_report(path: Path) -> LatencyReport:
    """``path`` as a typed report, or a one-line error naming the file and the first field it lacks."""
    path = Path(path)
    if not path.exists():
        raise SensiEdgeError(f"report {path} does not exist; pass report.json files from bench or run.py")
    if not path.is_file():
        raise SensiEdgeError(f"report {path} is not a file; pass report.json files from bench or run.py")
    r = _read_json(path, "pass report.json files from bench or run.py")
    if not isinstance(r, dict) or r.get("schema") != REPORT_SCHEMA:
        schema = r.get("schema") if isinstance(r, dict) else type(r).__name__
        raise SensiEdgeError(f"{path} is not a sensi-edge latency report (schema {schema!r}); pass report.json "
                             "files from bench or run.py")

    def bad(what: str) -> SensiEdgeError:
        return SensiEdgeError(f"{path}: {what}; regenerate it with bench or run.py")

    env = r.get("environment")
    cpu = env.get("cpu") if isinstance(env, dict) else None
    if not isinstance(cpu, dict) or not all(isinstance(cpu.get(k), str) for k in ("model", "machine")):
        raise bad("environment.cpu.model / .machine missing")
    results = r.get("results")
    if not isinstance(results, list) or not results:
        raise bad("no results")
    return LatencyReport(str(path), cpu["model"], cpu["machine"], tuple(_row(i, x, bad) for i, x in enumerate(results)))
