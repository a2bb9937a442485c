"""Tokenisation and padded batches for classification tasks (QA windows live in tasks/qa.py)."""
from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorWithPadding

from .presets import TaskSpec


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
