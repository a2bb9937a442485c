"""Tokenisation, batched prediction and scoring, shared by every stage that needs a metric."""
from __future__ import annotations

import numpy as np
from datasets import Dataset
from transformers import DataCollatorWithPadding

from .progress import track
from .tasks import TaskSpec, compute_metrics


def encode(ds: Dataset, tokenizer, task: TaskSpec, max_seq_length: int) -> Dataset:
    """Token ids + ``labels``; padding is left to the collator so batches stay as short as their longest row."""

    def fn(batch):
        texts = [batch[c] for c in task.text_columns]
        enc = tokenizer(*texts, truncation=True, max_length=max_seq_length)
        enc["labels"] = batch[task.label_column]
        return enc

    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc="tokenising", load_from_cache_file=False)


def batches(encoded: Dataset, tokenizer, batch_size: int) -> list[dict]:
    collate = DataCollatorWithPadding(tokenizer)
    return [collate([encoded[j] for j in range(i, min(i + batch_size, len(encoded)))]) for i in range(0, len(encoded), batch_size)]


def predict(runner, encoded: Dataset, tokenizer, batch_size: int = 64, desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) over a tokenised split, in row order; ``runner`` is a TorchRunner or OrtRunner."""
    logits, labels = [], []
    for batch in track(batches(encoded, tokenizer, batch_size), desc):
        labels.append(batch.pop("labels").numpy())
        logits.append(runner({k: v.numpy() for k, v in batch.items()})["logits"])
    return np.concatenate(logits), np.concatenate(labels)


def evaluate_model(model, encoded: Dataset, tokenizer, task: TaskSpec, batch_size: int = 64) -> dict[str, float]:
    """Task metrics of a PyTorch model (moved to CPU: evaluation is a CPU deployment check)."""
    from .runners import TorchRunner

    logits, labels = predict(TorchRunner(model.cpu()), encoded, tokenizer, batch_size)
    return compute_metrics(task, logits, labels)
