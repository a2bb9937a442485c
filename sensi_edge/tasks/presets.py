"""Task presets: which columns hold the text, where the labels are, how to score.

GLUE presets use GLUE's column names and label ids, so hub GLUE data and the local stand-ins in
../shared/data work unchanged. ``text-classification`` is the generic preset: text and label
columns are given or inferred, and the label count is inferred from the training labels.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import SensiEdgeError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[str, ...]  # one column (single sentence) or two (sentence pair)
    label_column: str = "label"
    num_labels: int | None = None
    validation_splits: tuple[str, ...] = ("validation",)  # first one found is used
    metric: str = "accuracy"  # the headline metric; every metric below is reported
    extra_metrics: tuple[str, ...] = ()
    kind: str = "classification"  # "classification" | "qa" (extractive, SQuAD schema)
    default_seq_length: int = 128
    # names of label ids 0..N-1 (the preset's, or the data's ClassLabel names); carried into the saved
    # model's id2label so pipelines print "positive", not "LABEL_1"
    label_names: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "text_columns": list(self.text_columns),
            "label_column": self.label_column,
            "num_labels": self.num_labels,
            "metric": self.metric,
            "kind": self.kind,
            "label_names": list(self.label_names) if self.label_names else None,
        }


PRESETS: dict[str, TaskSpec] = {
    # label names as GLUE defines them (the ids the local stand-ins in ../shared/data use too)
    "sst2": TaskSpec("sst2", ("sentence",), num_labels=2, label_names=("negative", "positive")),
    "mnli": TaskSpec("mnli", ("premise", "hypothesis"), num_labels=3, validation_splits=("validation_matched", "validation"),
                     label_names=("entailment", "neutral", "contradiction")),
    "qnli": TaskSpec("qnli", ("question", "sentence"), num_labels=2, label_names=("entailment", "not_entailment")),
    "qqp": TaskSpec("qqp", ("question1", "question2"), num_labels=2, extra_metrics=("f1",),
                    label_names=("not_duplicate", "duplicate")),
    "text-classification": TaskSpec("text-classification", ()),
    "squad": TaskSpec("squad", ("question", "context"), label_column="answers", metric="f1",
                      extra_metrics=("exact_match",), kind="qa", default_seq_length=384),
}

_TEXT_GUESSES = ("sentence", "text", "content", "document")


def default_seq_len(qa: bool) -> int:
    """The sequence length a model is measured at when nobody says: its kind's preset length (SQuAD's 384 for
    question answering, 128 for classification), so bench, bundle and compress agree."""
    return PRESETS["squad"].default_seq_length if qa else TaskSpec.default_seq_length


def get_task(name: str, text_columns: list[str] | None = None, label_column: str | None = None,
             num_labels: int | None = None) -> TaskSpec:
    """A preset, optionally with columns / label count overridden."""
    if name not in PRESETS:
        raise SensiEdgeError(f"unknown task {name!r}: choose one of {', '.join(PRESETS)}")
    task = PRESETS[name]
    if task.kind == "qa" and (text_columns or label_column or num_labels):
        raise SensiEdgeError("squad uses the SQuAD columns id/question/context/answers; drop the column/label flags")
    if text_columns:
        if len(text_columns) > 2:
            raise SensiEdgeError("give one text column (single sentence) or two (sentence pair)")
        task = replace(task, text_columns=tuple(text_columns))
    if label_column:
        task = replace(task, label_column=label_column)
    if num_labels is not None:
        if num_labels < 2:
            raise SensiEdgeError(f"--num-labels must be >= 2, got {num_labels}")
        if task.num_labels != num_labels:  # the preset's names no longer fit
            task = replace(task, label_names=None)
        task = replace(task, num_labels=num_labels)
    return task


def resolve_columns(task: TaskSpec, columns: list[str]) -> TaskSpec:
    """Fill in the text columns of the generic task from the data's column names."""
    if task.text_columns:
        return task
    for guess in _TEXT_GUESSES:
        if guess in columns:
            return replace(task, text_columns=(guess,))
    raise SensiEdgeError(
        f"cannot tell which column holds the text (columns: {', '.join(columns)}); pass --text-column NAME"
    )


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (and F1 of the positive class where the task reports it), in percent."""
    from sklearn.metrics import accuracy_score, f1_score

    preds = np.asarray(logits).argmax(-1)
    out = {"accuracy": 100.0 * accuracy_score(labels, preds)}
    if "f1" in task.extra_metrics:
        out["f1"] = 100.0 * f1_score(labels, preds)
    return out
