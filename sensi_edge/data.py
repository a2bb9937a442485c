"""Hub dataset ids and local split folders -> checked ``datasets`` splits.

Local folders hold one file per split, named after the split (train.jsonl, validation.csv,
validation_matched.parquet ...). Hub data is ``NAME`` or ``NAME:CONFIG`` (e.g. ``nyu-mll/glue:sst2``).
Every problem is raised as a SensiEdgeError naming the file/column/label and the fix, before any
training starts.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, load_dataset

from .errors import SensiEdgeError, first_line
from .tasks import TaskSpec, resolve_columns

# Reading and tokenising a split takes seconds; datasets' bars would only bury the messages that matter.
datasets.disable_progress_bars()

_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or Path(spec).suffix in _FORMATS


def _find_split_file(folder: Path, split: str) -> Path | None:
    for ext in _FORMATS:
        f = folder / f"{split}{ext}"
        if f.is_file():
            return f
    return None


def _load_local(folder: Path, splits: list[str]) -> dict[str, Dataset]:
    out = {}
    for split in splits:
        f = _find_split_file(folder, split)
        if f is None:
            continue
        with f.open("rb") as fh:
            head = fh.read(65536)
        if not head.strip():
            raise SensiEdgeError(f"{f} is empty; add rows to it (one JSON object per line, or a CSV with a header)")
        try:
            out[split] = load_dataset(_FORMATS[f.suffix], data_files={split: str(f)}, split=split)
        except Exception as exc:  # datasets raises many types for malformed files
            raise SensiEdgeError(f"cannot read {f} ({first_line(exc, 120)}); fix the file: JSON lines, a CSV with a "
                                 "comma-separated header row, or parquet") from exc
    return out


def _load_hub(spec: str) -> DatasetDict:
    name, _, config = spec.partition(":")
    try:
        return load_dataset(name, config or None)
    except Exception as exc:
        raise SensiEdgeError(
            f"cannot load dataset {spec!r} from the hub ({type(exc).__name__}); check the id "
            f"(NAME or NAME:CONFIG) and your connection, or pass a local folder of split files"
        ) from exc


def load_task_data(spec: str, task: TaskSpec, eval_split: str | None = None) -> tuple[Dataset, Dataset, TaskSpec]:
    """(train, validation, task with columns and label count resolved).

    ``eval_split`` replaces the preset's validation split names (e.g. to score on ``train``).
    """
    if eval_split:
        task = replace(task, validation_splits=(eval_split,))
    wanted = ["train", *task.validation_splits]
    path = Path(spec).expanduser()
    if path.is_dir():
        splits = _load_local(path, wanted)
        where = f"data folder {path}"
        files = {n: str(_find_split_file(path, n)) for n in splits}
    elif path.exists() or _looks_like_path(spec):
        what = "does not exist" if not path.exists() else "is not a folder of split files"
        raise SensiEdgeError(f"data path {spec} {what}; pass a folder holding train.jsonl and validation.jsonl "
                             "(or .csv/.parquet), or a hub dataset id NAME[:CONFIG]")
    else:
        splits = dict(_load_hub(spec))
        where = f"dataset {spec}"
        files = {n: f"{where} split {n!r}" for n in splits}
    if "train" not in splits:
        raise SensiEdgeError(f"{where} has no 'train' split; add train.jsonl (or .csv/.parquet)")
    val_name = next((s for s in task.validation_splits if s in splits), None)
    if val_name is None:
        raise SensiEdgeError(
            f"{where} has no {' or '.join(repr(s) for s in task.validation_splits)} split; add "
            f"{task.validation_splits[0]}.jsonl (or .csv/.parquet)"
        )
    train, val = splits["train"], splits[val_name]
    task = resolve_columns(task, train.column_names)
    for split_name, ds in (("train", train), (val_name, val)):
        missing = [c for c in (*task.text_columns, task.label_column) if c not in ds.column_names]
        if missing:
            glued = [c for c in ds.column_names if any(d in c for d in (";", "\t", "|"))]
            hint = (f"; the header {glued[0]!r} looks split by another delimiter: write the CSV with commas"
                    if glued else "; pass --text-column/--label-column or fix the data")
            raise SensiEdgeError(
                f"{where}: split {split_name!r} has no column {missing[0]!r} needed by task {task.name} "
                f"(columns: {', '.join(ds.column_names)}){hint}"
            )
    for split_name, ds in (("train", train), (val_name, val)):
        _check_texts(files.get(split_name, where), split_name, ds, task.text_columns)
    if task.kind == "qa":
        _check_answers(where, train, val, val_name)
        return train, val, task
    train, val, task = _map_string_labels(where, task, train, val, val_name)
    task = _check_labels(where, task, train, val, val_name)
    feature = train.features.get(task.label_column)
    if task.label_names is None and isinstance(feature, datasets.ClassLabel) and len(feature.names) == task.num_labels:
        task = replace(task, label_names=tuple(feature.names))
    return train, val, task


def _check_texts(source: str, split_name: str, ds: Dataset, columns) -> None:
    """Null, non-string or blank texts are an error naming the row: silently training on "None" or
    dropping rows would change what the user's numbers mean."""
    if len(ds) == 0:
        raise SensiEdgeError(f"{source}: split {split_name!r} has no rows; add data to it")
    for col in columns:
        bad = [i for i, x in enumerate(ds[col]) if not isinstance(x, str) or not x.strip()]
        if bad:
            value = ds[bad[0]][col]
            raise SensiEdgeError(f"{source}: row {bad[0] + 1} has {'an empty' if isinstance(value, str) else repr(value)} "
                                 f"{col!r} ({len(bad)} such row{'s' if len(bad) > 1 else ''}); fill in or remove those rows")


def _check_answers(where: str, train: Dataset, val: Dataset, val_name: str) -> None:
    """SQuAD schema: an id and answers {text: [...], answer_start: [...]} whose spans lie in the context."""
    for split_name, ds in (("train", train), (val_name, val)):
        if "id" not in ds.column_names:
            raise SensiEdgeError(f"{where}: split {split_name!r} has no column 'id' (SQuAD schema: id, question, context, answers)")
        for row in ds.select(range(min(len(ds), 2000))):
            a = row["answers"]
            if not isinstance(a, dict) or "text" not in a or "answer_start" not in a or len(a["text"]) != len(a["answer_start"]):
                raise SensiEdgeError(f"{where}: split {split_name!r} row {row['id']!r} has answers {a!r}; "
                                     "expected {'text': [...], 'answer_start': [...]}")
            for text, start in zip(a["text"], a["answer_start"]):
                if row["context"][start: start + len(text)] != text:
                    raise SensiEdgeError(f"{where}: split {split_name!r} row {row['id']!r}: answer {text!r} is not at "
                                         f"character {start} of its context; fix answer_start")


def _map_string_labels(where: str, task: TaskSpec, train: Dataset, val: Dataset, val_name: str):
    """Text labels ("spam", "ham") become ids 0..N-1 and their names become the model's id2label.

    The order is the task preset's label names when it has them (sst2: negative, positive), else the
    sorted distinct training labels, so the same data always gives the same ids. A validation label
    the training split never shows is an error (the model could not predict it)."""
    col = task.label_column
    train_labels, val_labels = list(train[col]), list(val[col])
    if not any(isinstance(x, str) for x in train_labels + val_labels):
        return train, val, task
    if not all(isinstance(x, str) for x in train_labels + val_labels):
        raise SensiEdgeError(f"{where}: labels in {col!r} mix text and numbers; use one kind (names or ids 0..N-1)")
    names = list(task.label_names) if task.label_names else sorted(set(train_labels))
    ids = {n: i for i, n in enumerate(names)}
    for split_name, labels in (("train", train_labels), (val_name, val_labels)):
        unknown = sorted(set(labels) - set(ids))  # ids: the preset's names, else the training labels
        if unknown:
            known = ", ".join(repr(n) for n in names)
            raise SensiEdgeError(f"{where}: split {split_name!r} has label {unknown[0]!r}, not one of {known}; "
                                 "fix the data or choose the right --task")
    if task.num_labels is not None and task.num_labels != len(names):
        raise SensiEdgeError(f"{where}: {len(names)} label names ({', '.join(names)}) but task {task.name} has "
                             f"{task.num_labels} labels; choose the right --task/--num-labels")

    def to_ids(batch):
        return {col: [ids[x] for x in batch[col]]}

    train, val = train.map(to_ids, batched=True), val.map(to_ids, batched=True)
    return train, val, replace(task, num_labels=len(names), label_names=tuple(names))


def _check_labels(where: str, task: TaskSpec, train: Dataset, val: Dataset, val_name: str) -> TaskSpec:
    num_labels = task.num_labels
    if num_labels is None:
        labels = train[task.label_column]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
            raise SensiEdgeError(f"{where}: labels in {task.label_column!r} must be integers 0..N-1")
        num_labels = max(labels) + 1
        if num_labels < 2:
            raise SensiEdgeError(f"{where}: the training labels hold a single class; need >= 2")
        task = replace(task, num_labels=num_labels)
    for split_name, ds in (("train", train), (val_name, val)):
        bad = [x for x in ds[task.label_column] if not (isinstance(x, int) and 0 <= x < num_labels)]
        if bad:
            raise SensiEdgeError(
                f"{where}: split {split_name!r} has label {bad[0]!r} outside the task's labels 0..{num_labels - 1} "
                f"({len(bad)} rows); fix the data or choose the right --task/--num-labels"
            )
    classes = set(train[task.label_column])
    if len(classes) < 2:
        raise SensiEdgeError(f"{where}: the training split holds a single class ({classes.pop()!r}); a classifier "
                             "needs examples of at least two classes: fix the data")
    return task
