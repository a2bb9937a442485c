"""What each reusable stage's result depends on, as digests of the data it consumes, not of flag spellings.

The dense-side stages (``baseline``, ``warmup``, ``sensitivity``) are the expensive ones, and the same result
serves many runs (other budgets, other methods). Each declares its inputs here (``STAGE_INPUTS``); the digest
of those inputs is its key, recorded in ``stage_keys.json`` when it finishes. A stage is then skipped when an
artifact with the same key is there:

- ``--reuse KEPT``: the kept run's stage is copied only when its key equals this run's (the same model files,
  the same task head, the same tokenised training rows, the same recipe ...). The same rows in another folder
  are the same input; an edited data folder is not, nor a ``--max-train-samples`` (it reshuffles the rows).
- ``--resume``: a finished stage whose inputs changed since it ran (the data folder edited between sessions)
  is refused instead of being mixed into a run it no longer matches.

The digests are SHA-256 over canonical bytes (token ids, tensors, sorted JSON with numbers as floats where the
field is a float, file contents). A hub id is keyed by the commit of its snapshot in the local cache (the files
the run loads), or by its name when no snapshot is cached yet. A version that adds a recipe field must give
the runs kept before it that field's old value (``of_recipe``), or they stop matching.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import SCHEMA_VERSION, JsonArtifact

FILE = "stage_keys.json"
# stage -> the named inputs its result depends on (see ``inputs_of``); the order the stages run in
STAGE_INPUTS = {
    "baseline": ("model", "task", "train", "validation", "recipe"),
    "warmup": ("model", "task", "train", "recipe", "warmup_steps"),
    "sensitivity": ("analysed_model", "calibration", "sensitivity_method", "probe_density"),
}
# stage -> its artifacts in the work folder, the marker (the one whose presence means "done") last
ARTIFACTS = {
    "baseline": ("dense_model", "baseline.json"),
    "warmup": ("warm_model",),
    "sensitivity": ("sensitivity.png", "sensitivity.json"),
}
# the inputs every dense-side stage shares: a kept run that differs in one of them has nothing to give
SHARED = ("model", "task", "train", "validation", "recipe")
WORDS = {"model": "model files", "task": "task head and labels", "train": "tokenised training rows",
         "validation": "validation rows",
         "recipe": "recipe", "warmup_steps": "warm-up steps", "analysed_model": "analysed model",
         "calibration": "calibration batches", "sensitivity_method": "sensitivity method",
         "probe_density": "probe density"}


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else str(c).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def of_json(value) -> str:
    return _sha([json.dumps(value, sort_keys=True, default=str)])


def of_folder(path: Path) -> str:
    """Every file's relative name and bytes; hidden files and folders (.git, .cache) aside."""
    files = sorted(p for p in Path(path).rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))

    def chunks():
        for p in files:
            yield str(p.relative_to(path))
            with p.open("rb") as f:
                while block := f.read(1 << 22):
                    yield block
    return _sha(chunks())


def of_model(spec: str) -> str:
    """A local folder by its files; a hub id by the commit of its cached snapshot (two names of one repository
    agree, a new revision does not), or by its name before anything of it is cached."""
    if Path(spec).is_dir():
        return of_folder(Path(spec))
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json")
    if isinstance(cached, str):  # .../snapshots/<commit>/config.json
        return of_json({"hub_commit": Path(cached).parent.name})
    return of_json({"hub": spec})


def of_rows(ds) -> str:
    """A datasets.Dataset by its columns' values, row order included (what training actually sees)."""
    rows = ds.with_format(None)[:]  # every row as plain lists (a bare ds[column] may be a lazy Column object)
    return _sha(json.dumps(rows[c], default=str).encode() for c in sorted(rows))


def of_batches(batches: list[dict]) -> str:
    def chunks():
        for b in batches:
            for k in sorted(b):
                t = b[k].detach().cpu().contiguous()
                yield k
                yield f"{tuple(t.shape)} {t.dtype}"
                yield t.numpy().tobytes()
    return _sha(chunks())


def of_recipe(recipe) -> str:
    """Every field, a float field's value as a float (``epochs=2`` and ``epochs=2.0`` are one recipe)."""
    import dataclasses

    kinds = {f.name: f.type for f in dataclasses.fields(recipe)}
    return of_json({k: float(v) if kinds[k] in ("float", float) and isinstance(v, int) else v
                    for k, v in recipe.to_dict().items()})


@dataclass(frozen=True)
class StageKeys(JsonArtifact):
    """stage_keys.json: per finished dense-side stage, its key and the digest of each input behind it."""

    stages: dict = field(default_factory=dict)  # stage -> {"key": digest, "inputs": {name: digest}}
    schema_version: int = SCHEMA_VERSION

    def key(self, stage: str) -> str | None:
        return self.stages.get(stage, {}).get("key")

    def differing(self, stage: str, inputs: dict) -> list[str]:
        """Names of this stage's inputs recorded here that differ from ``inputs`` (words a user reads)."""
        mine = self.stages.get(stage, {}).get("inputs", {})
        names = [WORDS.get(n, n) for n in inputs if n in mine and mine[n] != inputs[n]]
        return names or ["inputs (declared differently by another sensi-edge version)"]

    def shared_differing(self, inputs: dict) -> list[str]:
        """The SHARED inputs that differ between any recorded stage here and ``inputs`` (name -> digest)."""
        out = []
        for rec in self.stages.values():
            for n in SHARED:
                if n in rec.get("inputs", {}) and n in inputs and rec["inputs"][n] != inputs[n] and WORDS[n] not in out:
                    out.append(WORDS[n])
        return out

    def with_stage(self, stage: str, inputs: dict) -> StageKeys:
        return StageKeys({**self.stages, stage: {"key": of_json(inputs), "inputs": inputs}})

    @classmethod
    def read(cls, folder: Path) -> StageKeys:
        """The folder's keys; empty when none were recorded yet."""
        p = Path(folder) / FILE
        return cls.load(p) if p.is_file() else cls()


def inputs_of(stage: str, digests: dict) -> dict:
    """The named input digests of ``stage`` from a run's digests (``digests`` holds every name in STAGE_INPUTS)."""
    return {n: digests[n] for n in STAGE_INPUTS[stage]}
