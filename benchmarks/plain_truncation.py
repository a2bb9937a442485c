"""Control for the sweep's `truncate` rows: plain Hugging Face fine-tuning of MiniLM cut to k layers.

    python -m benchmarks.plain_truncation [--layers 3 6] [--data rt-polarity] [--max-train-samples 2000] [--epochs 2]

No sensi-edge code touches the model or the training (only the default model path and the data
folder): if a model cut this way also ends at the majority class, a collapsed `truncate` run is
the model and recipe, not our masks or physical removal. Writes results/plain_truncation.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"


def run(layers: int, data: Path, rows: int, epochs: float, seed: int, workdir: Path) -> dict:
    from datasets import load_dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from sensi_edge.loading import default_model_path

    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.bert.encoder.layer = model.bert.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    ds = load_dataset("json", data_files={"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl")})

    def enc(split):
        return split.map(lambda b: tok(b["sentence"], truncation=True, max_length=128), batched=True).rename_column(
            "label", "labels").select_columns(["input_ids", "token_type_ids", "attention_mask", "labels"])

    train = enc(ds["train"].shuffle(seed=seed).select(range(rows)))
    val = enc(ds["validation"])
    args = TrainingArguments(str(workdir), num_train_epochs=epochs, learning_rate=5e-5, per_device_train_batch_size=32,
                             warmup_ratio=0.06, weight_decay=0.01, save_strategy="no", report_to=[], seed=seed,
                             disable_tqdm=True, logging_steps=10_000)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
    out = trainer.train()
    pred = trainer.predict(val).predictions.argmax(-1)
    labels = np.array(val["labels"])
    return {"layers": layers, "train_loss": out.training_loss, "accuracy": 100.0 * float((pred == labels).mean()),
            "majority_class_accuracy": 100.0 * float(max(np.mean(labels == c) for c in np.unique(labels))),
            "predicted_classes": sorted(int(c) for c in np.unique(pred))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 6])
    ap.add_argument("--data", default="rt-polarity", help="a folder of ../shared/data in the SST-2 schema")
    ap.add_argument("--max-train-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    start = time.perf_counter()
    rows = [run(k, SHARED / args.data, args.max_train_samples, args.epochs, args.seed, ROOT.parent / "runs" / "plain")
            for k in args.layers]
    report = {"command": f"python -m benchmarks.plain_truncation --layers {' '.join(map(str, args.layers))} --data "
                         f"{args.data} --max-train-samples {args.max_train_samples} --epochs {args.epochs:g}",
              "recipe": "lr 5e-5, batch 32, warm-up 6%, weight decay 0.01, seq <= 128 (the sweep's)",
              "seed": args.seed, "results": rows, "wall_seconds": round(time.perf_counter() - start, 1)}
    (ROOT / "results" / "plain_truncation.json").write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['layers']} layers: accuracy {r['accuracy']:.2f} (majority class {r['majority_class_accuracy']:.2f}), "
              f"predicted classes {r['predicted_classes']}")


if __name__ == "__main__":
    main()
