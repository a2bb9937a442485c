"""Typed, immutable hand-offs between pipeline stages, each with a JSON round-trip.

A stage reads the previous stage's artifact from disk, never its in-memory state, so a killed
run resumes from files and a plan can be replayed on a fresh copy of the base model
("the plan is data, the model is derived from it").
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cost import Geometry

SCHEMA_VERSION = 1


def content_hash(payload) -> str:
    """Short stable hash of a JSON-able value, to tie an artifact to what it was derived from."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class CompressedModelFacts:
    """What the later stages (export, bench) need from the compress run a model folder came from.

    report.json is written for people and for benchmarks; the stages downstream read this typed view of it,
    so a renamed key fails here, by name, instead of deep inside export or bench."""

    task: dict  # TaskSpec.to_dict(): name, kind, text_columns, label_column, num_labels, ...
    data: str  # the data the run used (export verifies on the same)
    base_model: str  # the dense pretrained model (hub id or folder): bench's reference
    metric: str  # the task's headline metric
    compressed: dict  # the compressed model's validation metrics

    @property
    def metric_value(self) -> float:
        return self.compressed[self.metric]

    @classmethod
    def from_report(cls, r: dict) -> "CompressedModelFacts":
        return cls(task=r["task"], data=r["data"], base_model=str(r["model"]), metric=r["metric"],
                   compressed=r["compressed"])


def compress_report_for(model_dir: Path) -> CompressedModelFacts | None:
    """The compress run a model folder came from (OUT/model -> OUT/report.json), or None for any other folder."""
    model_dir = Path(model_dir)
    # only OUT/model is the compressed model: a kept OUT/dense_model or OUT/warm_model is not what the report scores
    for f in (model_dir / "report.json",) + ((model_dir.parent / "report.json",) if model_dir.name == "model" else ()):
        if f.is_file():
            r = _read_json(f, "rerun compress, or pass --task and --data")
            if isinstance(r, dict) and "compressed" in r and "task" in r and "data" in r:
                return _typed(CompressedModelFacts.from_report, r, f, "rerun compress, or pass --task and --data")
    return None


def _read_json(path: Path, fix: str):
    """A stage's JSON file, or the one-line error that names it (a torn or hand-edited file is the user's to fix)."""
    from .errors import SensiEdgeError

    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SensiEdgeError(f"cannot read {path} ({type(exc).__name__}); {fix}") from None


def _typed(build, d, path: Path, fix: str):
    """``build(d)``, or the one-line error naming the file and the field it lacks or cannot take."""
    from .errors import SensiEdgeError

    try:
        return build(d)
    except KeyError as exc:
        raise SensiEdgeError(f"{path} lacks {exc}, which sensi-edge needs; {fix}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise SensiEdgeError(f"{path} is not a file this sensi-edge can read ({str(exc).splitlines()[0][:120]}); "
                             f"{fix}") from None


@dataclass(frozen=True)
class ExportFacts:
    """What bench needs from the export an .onnx file belongs to (export_report.json, typed)."""

    model_dir: str  # the PyTorch model folder that was exported
    geometry: Geometry  # per-layer heads and FFN widths (bench's FLOP counts)
    metric: str
    variant_metrics: dict  # ONNX file name -> that variant's metrics on the validation rows

    def metric_of(self, onnx_file: Path) -> float | None:
        m = self.variant_metrics.get(Path(onnx_file).name)
        return None if m is None else m[self.metric]

    @classmethod
    def from_report(cls, r: dict) -> "ExportFacts":
        return cls(model_dir=r["model_dir"], geometry=Geometry.from_dict(r["geometry"]), metric=r["metric"],
                   variant_metrics={Path(v["file"]).name: v["metrics"] for v in r["variants"]})


def export_report_for(onnx_file: Path) -> ExportFacts | None:
    """The export an .onnx file came from (its folder's export_report.json; a rejected variant's is one up)."""
    folder = Path(onnx_file).parent
    for f in (folder / "export_report.json",) + ((folder.parent / "export_report.json",) if folder.name == "rejected" else ()):
        if f.is_file():
            return _typed(ExportFacts.from_report, _read_json(f, "rerun export"), f, "rerun export")
    return None


def refuse_occupied(output: Path) -> None:
    """Stages never write over a finished run or a user's folder: an existing output must be empty."""
    from .errors import SensiEdgeError

    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SensiEdgeError(f"output {output} already exists and is not empty; choose another --output or remove it")


@contextmanager
def staged_output(output: Path, stage: str):
    """Yield ``OUT.partial`` for a stage that is cheap to redo (export, bundle); rename it to ``OUT``
    when the block completes, delete it when the block raises.

    The folder is marked as ours: a stale partial folder of the same stage is wiped, any other folder
    of that name is refused, so a user's own ``X.partial`` is never deleted. (compress keeps its
    partial folder across runs instead: its stages are resumable.)
    """
    import shutil

    from .errors import SensiEdgeError

    refuse_occupied(output)
    work = output.parent / f"{output.name}.partial"
    marker = f".sensi-edge-{stage}"
    if work.exists() and not (work / marker).exists():
        raise SensiEdgeError(f"{work} exists and is not an unfinished {stage}; choose another --output or remove it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / marker).touch()
    except OSError as exc:
        raise SensiEdgeError(f"cannot write {work}: {exc.strerror}; choose a writable --output") from exc
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        if output.exists():
            output.rmdir()
        os.replace(work, output)
    except OSError as exc:
        raise SensiEdgeError(f"cannot move the finished {stage} from {work} to {output}: {exc.strerror}; "
                             f"move it by hand or choose another --output") from exc
    (output / marker).unlink()


def write_json_atomic(path: Path, payload) -> None:
    """Write JSON so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


class JsonArtifact:
    """One JSON round trip for every stage artifact: ``to_dict``/``from_dict`` are the class's own; ``save``
    (atomic), ``load`` (refusing a schema newer than this code), and ``hash`` (of what the file holds) are here.

    A file without ``schema_version`` predates the field and reads as version 1."""

    schema_version: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)

    def hash(self) -> str:
        return content_hash(self.to_dict())

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path):
        from .errors import SensiEdgeError

        fix = "rerun the stage that wrote it (delete the file, then --resume)"
        d = _read_json(path, fix)
        if not isinstance(d, dict):
            raise SensiEdgeError(f"{path} holds a JSON {type(d).__name__}, not a {cls.__name__}; {fix}")
        if d.get("schema_version", 1) > SCHEMA_VERSION:
            raise SensiEdgeError(f"{path} was written by a newer sensi-edge (schema {d['schema_version']} > "
                                 f"{SCHEMA_VERSION}); upgrade sensi-edge or rerun the stage that wrote it")
        return _typed(cls.from_dict, d, path, fix)


@dataclass(frozen=True)
class DenseBaseline(JsonArtifact):
    """baseline.json: the dense model fine-tuned with the recipe, scored on the validation rows (the number to
    beat); the model itself is dense_model/ beside it."""

    metrics: dict  # the task's metrics (its headline metric and the rest)
    train: dict  # what the fine-tune did: steps, final loss, seconds (finetune's info)
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TrimResult(JsonArtifact):
    """trim.json: how the trimmed model was produced (fine-tune steps, or a retraining-free method's tuning log)
    and how far the physically pruned model is from the masked one it was cut from (the removal's parity)."""

    train: dict
    masked_vs_pruned_max_abs_diff: float
    schema_version: int = SCHEMA_VERSION

    @property
    def steps(self) -> int:
        return self.train["steps"]


@dataclass(frozen=True)
class GroupSensitivity:
    layer: int
    kind: str  # "attention" (heads: Q/K/V rows + O columns) | "ffn" (neurons: intermediate rows + output columns)
    score: float  # higher = more sensitive = trimmed less
    loss: float | None = None  # calibration loss with this group alone trimmed to the probe density
    metric: float | None = None
    # standard error of ``score`` over the calibration batches (paired: the probe's loss minus the dense loss
    # of the same batch); None for Fisher scores and for analyses saved before it was measured
    score_se: float | None = None


@dataclass(frozen=True)
class SensitivityReport(JsonArtifact):
    """Per-group sensitivity plus per-unit importance inside every group."""

    method: str  # "probe" | "fisher"
    probe_density: float
    geometry: Geometry
    dense_loss: float
    dense_metric: float
    groups: tuple[GroupSensitivity, ...]
    head_importance: tuple[tuple[float, ...], ...]  # [layer][head]
    neuron_importance: tuple[tuple[float, ...], ...]  # [layer][neuron]
    calibration_rows: int
    seconds: float
    schema_version: int = SCHEMA_VERSION

    def scores(self) -> dict[tuple[int, str], float]:
        return {(g.layer, g.kind): g.score for g in self.groups}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["geometry"] = self.geometry.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SensitivityReport":
        d = dict(d)
        d["geometry"] = Geometry.from_dict(d["geometry"])
        d["groups"] = tuple(GroupSensitivity(**g) for g in d["groups"])
        d["head_importance"] = tuple(tuple(x) for x in d["head_importance"])
        d["neuron_importance"] = tuple(tuple(x) for x in d["neuron_importance"])
        return cls(**d)


@dataclass(frozen=True)
class TrimPlan(JsonArtifact):
    """Which heads and FFN neurons every layer keeps. Replaying it on the base model rebuilds the trimmed one."""

    dense: Geometry
    keep_heads: tuple[tuple[int, ...], ...]  # [layer] -> sorted kept head indices
    keep_neurons: tuple[tuple[int, ...], ...]  # [layer] -> sorted kept neuron indices
    budget: dict
    source: dict = field(default_factory=dict)  # hashes / names of what the plan was derived from
    schema_version: int = SCHEMA_VERSION

    @property
    def trimmed(self) -> Geometry:
        return self.dense.with_sizes([len(h) for h in self.keep_heads], [len(n) for n in self.keep_neurons])

    def to_dict(self) -> dict:
        from .cost import encoder_flops, encoder_params

        seq = self.budget.get("seq_len", 128)
        return {
            "schema_version": self.schema_version,
            "dense": self.dense.to_dict(),
            "budget": self.budget,
            "source": self.source,
            "summary": {
                "heads_per_layer": list(self.trimmed.heads),
                "ffn_per_layer": list(self.trimmed.ffn),
                "encoder_params": [encoder_params(self.dense), encoder_params(self.trimmed)],
                f"encoder_flops_seq{seq}": [encoder_flops(self.dense, seq), encoder_flops(self.trimmed, seq)],
            },
            "keep_heads": [list(h) for h in self.keep_heads],
            "keep_neurons": [list(n) for n in self.keep_neurons],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TrimPlan":
        return cls(
            dense=Geometry.from_dict(d["dense"]),
            keep_heads=tuple(tuple(h) for h in d["keep_heads"]),
            keep_neurons=tuple(tuple(n) for n in d["keep_neurons"]),
            budget=d["budget"],
            source=d.get("source", {}),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
        )
