"""Per-task-kind preparation and scoring, so compress / export / evaluate share one code path.

``ClassificationEval`` and ``QAEval`` answer the same questions: how to turn rows into training
features, how to prepare a split for scoring, and how to score a runner (PyTorch or ONNX) on it,
returning the metrics and the raw outputs (for parity checks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from ..progress import track
from .presets import TaskSpec, compute_metrics
from .tokenise import batches, encode


@dataclass
class Scored:
    metrics: dict[str, float]
    outputs: np.ndarray  # logits [rows, labels] or start/end logits [features, 2, seq] (padded)

    def check_finite(self, what) -> "Scored":
        """A model whose outputs hold NaN or inf has broken weights: no metric of it means anything."""
        from ..errors import SensiEdgeError

        if not np.isfinite(self.outputs).all():
            raise SensiEdgeError(f"{what} produces non-finite outputs (NaN/inf): its weights are broken, most likely "
                                 "by a diverged fine-tune; recompress it with a lower --learning-rate")
        return self


class ClassificationEval:
    def __init__(self, task: TaskSpec, tokenizer, max_seq_length: int):
        self.task, self.tokenizer, self.max_seq_length = task, tokenizer, max_seq_length

    def train_features(self, rows: Dataset) -> Dataset:
        return encode(rows, self.tokenizer, self.task, self.max_seq_length)

    def prepare(self, rows: Dataset):
        return encode(rows, self.tokenizer, self.task, self.max_seq_length)

    def select(self, prepared, n: int):
        return prepared.select(range(min(n, len(prepared))))

    def score(self, runner, prepared, batch_size: int = 64, desc: str = "evaluating") -> Scored:
        logits, labels = [], []
        for batch in track(batches(prepared, self.tokenizer, batch_size), desc):
            labels.append(batch.pop("labels").numpy())
            logits.append(runner({k: v.numpy() for k, v in batch.items()})["logits"])
            if logits[-1].shape[-1] != self.task.num_labels:
                from ..errors import SensiEdgeError

                raise SensiEdgeError(f"the model predicts {logits[-1].shape[-1]} classes but task {self.task.name} has "
                                     f"{self.task.num_labels}; pick the matching --task/--num-labels")
        logits = np.concatenate(logits)
        return Scored(compute_metrics(self.task, logits, np.concatenate(labels)), logits)

    def calibration_inputs(self, prepared, n: int) -> list[dict]:
        rows = prepared.select(range(min(n, len(prepared))))
        return [{k: v.numpy() for k, v in b.items() if k != "labels"} for b in batches(rows, self.tokenizer, 8)]


class QAEval:
    def __init__(self, task: TaskSpec, tokenizer, max_seq_length: int, doc_stride: int = 128,
                 n_best: int = 20, max_answer_length: int = 30):
        self.task, self.tokenizer, self.max_seq_length = task, tokenizer, max_seq_length
        self.doc_stride = min(doc_stride, max_seq_length // 2)
        self.n_best, self.max_answer_length = n_best, max_answer_length

    def train_features(self, rows: Dataset) -> Dataset:
        from .qa import train_features

        return rows.map(lambda b: train_features(b, self.tokenizer, self.max_seq_length, self.doc_stride),
                        batched=True, remove_columns=rows.column_names, load_from_cache_file=False)

    def prepare(self, rows: Dataset):
        from .qa import eval_features

        feats = rows.map(lambda b: eval_features(b, self.tokenizer, self.max_seq_length, self.doc_stride),
                         batched=True, remove_columns=rows.column_names, load_from_cache_file=False)
        return rows, feats

    def select(self, prepared, n: int):
        rows, _ = prepared
        return self.prepare(rows.select(range(min(n, len(rows)))))

    def score(self, runner, prepared, batch_size: int = 32, desc: str = "evaluating") -> Scored:
        from transformers import DataCollatorWithPadding

        from .qa import best_spans, squad_metrics

        rows, feats = prepared
        model_inputs = feats.remove_columns(["example_id", "offset_mapping"])
        collate = DataCollatorWithPadding(self.tokenizer)
        starts, ends = [], []
        idx = list(range(0, len(model_inputs), batch_size))
        for i in track(idx, desc):
            batch = collate([model_inputs[j] for j in range(i, min(i + batch_size, len(model_inputs)))])
            out = runner({k: v.numpy() for k, v in batch.items()})
            pad = self.max_seq_length - out["start_logits"].shape[1]
            starts.append(np.pad(out["start_logits"], ((0, 0), (0, pad)), constant_values=-1e4))
            ends.append(np.pad(out["end_logits"], ((0, 0), (0, pad)), constant_values=-1e4))
        start, end = np.concatenate(starts), np.concatenate(ends)
        preds = best_spans(rows, feats, start, end, self.n_best, self.max_answer_length)
        golds = {r["id"]: list(r["answers"]["text"]) for r in rows}
        return Scored(squad_metrics(preds, golds), np.stack([start, end], axis=1))

    def calibration_inputs(self, prepared, n: int) -> list[dict]:
        from transformers import DataCollatorWithPadding

        feats = prepared.select(range(min(n, len(prepared)))).remove_columns(["start_positions", "end_positions"])
        collate = DataCollatorWithPadding(self.tokenizer)
        return [{k: v.numpy() for k, v in collate([feats[j] for j in range(i, min(i + 8, len(feats)))]).items()}
                for i in range(0, len(feats), 8)]


def evaluator_for(task: TaskSpec, tokenizer, max_seq_length: int, doc_stride: int = 128):
    if task.kind == "qa":
        return QAEval(task, tokenizer, max_seq_length, doc_stride)
    return ClassificationEval(task, tokenizer, max_seq_length)
