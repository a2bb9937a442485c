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


# ---- shared by several test modules (model builders, data rows, a tiny irregular export)
def squad_rows(n, seed=0):
    import random

    rnd = random.Random(seed)
    cities = ["Lisbon", "Porto", "Madrid", "Paris", "Berlin", "Vienna", "Prague", "Rome"]
    rows = []
    for i in range(n):
        city = rnd.choice(cities)
        filler = " ".join(rnd.choice(["old", "river", "bridge", "market", "square", "tower"]) for _ in range(rnd.randint(5, 40)))
        context = f"{filler}. The festival takes place in {city} every year. {filler}."
        rows.append({"id": f"q{seed}-{i}", "title": "t", "question": "Where does the festival take place?",
                     "context": context, "answers": {"text": [city], "answer_start": [context.index(f"in {city}") + 3]}})
    return rows


def random_plan(g, seed, empty_layer=True):
    """A random TrimPlan of geometry g; by default layer 0 keeps no heads and layer 1 no neurons."""
    import random

    from sensi_edge.artifacts import TrimPlan

    rnd = random.Random(seed)
    heads, neurons = [], []
    for i, (h, f) in enumerate(zip(g.heads, g.ffn)):
        kh = 0 if (empty_layer and i == 0) else rnd.randint(0, h)
        kf = 0 if (empty_layer and i == 1) else rnd.randint(0, f)
        heads.append(tuple(sorted(rnd.sample(range(h), kh))))
        neurons.append(tuple(sorted(rnd.sample(range(f), kf))))
    return TrimPlan(g, tuple(heads), tuple(neurons), {"kind": "params"})


def model_and_batches(seed=0, layers=2):
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(layers=layers, heads=4, hidden=32, ffn=48)).eval()
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(4):
        ids = torch.randint(1000, 5000, (16, 12), generator=g)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)})
    return model, batches


def label_with_own_predictions(model, batches):
    """Labels = the dense model's argmax, so the dense model is right and removing what it uses hurts."""
    import torch

    with torch.no_grad():
        for b in batches:
            b["labels"] = model(**b).logits.argmax(-1)
    return batches


def irregular_model_dir(tmp_path, seed=0):
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from sensi_edge.arch import adapter_for
    from sensi_edge.loading import default_model_path
    from sensi_edge.surgery import apply_plan

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(layers=4, heads=4, hidden=32, ffn=40)).eval()
    plan = random_plan(adapter_for(model).geometry(model), seed)  # layer 0 has 0 heads, layer 1 has 0 neurons
    trimmed = apply_plan(model, plan)
    out = tmp_path / "model"
    trimmed.save_pretrained(out)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(out)
    return out, plan


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst2")
    write_jsonl(d / "train.jsonl", sentiment_rows(96))
    write_jsonl(d / "validation.jsonl", sentiment_rows(48, seed=1))
    return d


@pytest.fixture(scope="module")
def irregular_export(tmp_path_factory, sst2_dir):
    """(model folder, export folder, plan) of a tiny irregular model (empty layers included)."""
    from sensi_edge.export import ExportConfig, export

    root = tmp_path_factory.mktemp("bench")
    model_dir, plan = irregular_model_dir(root)
    res = export(ExportConfig(model_dir, root / "onnx", quantize=("dynamic",), task="sst2", data=str(sst2_dir),
                              max_metric_drop=100.0), log=lambda m: None)
    return model_dir, res.output, plan


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


# Source for the compress drivers of test_interruptions / test_distributed: with KILL_AT=<stage>:<n> in the
# environment, rank 0 (the only process outside a launcher) SIGKILLs itself at the n-th checkpoint of that
# fine-tune, after the weights and optimizer are written but before trainer_state.json: a torn checkpoint.
# Needs os, signal and transformers.Trainer imported before it.
KILL_AT_CHECKPOINT = r"""
kill_at = os.environ.get("KILL_AT")
if kill_at and os.environ.get("RANK", "0") == "0":
    stage, n = kill_at.split(":")
    real, seen = Trainer._save_rng_state, [0]
    def torn(self, output_dir):
        if f"ckpt-{stage}" in str(output_dir):
            seen[0] += 1
            if seen[0] == int(n):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, output_dir)
    Trainer._save_rng_state = torn
"""


@pytest.fixture()
def compress_calls(monkeypatch) -> list:
    """`sensi-edge compress` stopped before any work: each call's (config, resume) is appended to the returned
    list and the command then exits 130 (as on Ctrl-C), so a test sees the config the flags built."""
    import sys

    calls = []

    def capture(cfg, resume=False, log=print):
        calls.append((cfg, resume))
        raise KeyboardInterrupt

    # the package attribute is the function of that name, so patch the module itself
    monkeypatch.setattr(sys.modules["sensi_edge.compress"], "compress", capture)
    return calls
