"""Tiny random BERTs (built from a config, saved like a hub checkpoint) and tiny task data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id must fail fast here, not after retries
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiny_config(num_labels=2, layers=3, heads=4, hidden=32, ffn=48):
    from transformers import AutoTokenizer, BertConfig

    from sensi_edge.loading import default_model_path

    vocab = AutoTokenizer.from_pretrained(default_model_path()).vocab_size
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=ffn, max_position_embeddings=128, num_labels=num_labels,
                      initializer_range=0.2)  # wide enough init that a trimmed head visibly changes logits


def save_tiny_bert(path: Path, num_labels=2, **kw) -> Path:
    """A random BertModel checkpoint + the MiniLM tokenizer: the same layout as a hub folder."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from sensi_edge.loading import default_model_path

    torch.manual_seed(0)
    BertModel(tiny_config(num_labels, **kw)).save_pretrained(path)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def sentiment_rows(n, seed=0):
    import random

    rnd = random.Random(seed)
    good, bad = ["great", "lovely", "superb", "fun"], ["awful", "boring", "dull", "bad"]
    rows = []
    for i in range(n):
        label = i % 2
        words = [rnd.choice(good if label else bad) for _ in range(rnd.randint(2, 6))]
        rows.append({"sentence": "the film was " + " ".join(words), "label": label, "idx": i})
    return rows


@pytest.fixture()
def tiny_sst2_dir(tmp_path) -> Path:
    d = tmp_path / "sst2"
    write_jsonl(d / "train.jsonl", sentiment_rows(48))
    write_jsonl(d / "validation.jsonl", sentiment_rows(16, seed=1))
    return d
