"""Extractive question answering (SQuAD v1.1): windows over long contexts, span search, EM/F1.

Preprocessing follows the standard recipe: question + context with truncation of the context
only, ``max_seq_length`` (384) tokens per window and ``doc_stride`` (128) tokens of overlap,
offset mappings to map token spans back to characters. A training window that does not contain
the answer is labelled with the [CLS] position. Post-processing takes, per example, the best
n-best start/end pair over all its windows with end >= start and at most ``max_answer_length``
tokens, inside the context. The metric is the official SQuAD v1.1 EM/F1 (answer normalisation:
lower case, strip punctuation, articles a/an/the and extra whitespace; max over gold answers),
written here because the ``evaluate`` library downloads its metric code from the hub.
"""
from __future__ import annotations

import collections
import re
import string

import numpy as np

# ---------------------------------------------------------------------------------------- metric


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """EM and F1 in percent, each the max over an example's gold answers, averaged over examples."""
    if not answers:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(max(exact_match(predictions.get(k, ""), g) for g in golds) for k, golds in answers.items())
    f = sum(max(f1(predictions.get(k, ""), g) for g in golds) for k, golds in answers.items())
    return {"exact_match": 100.0 * em / len(answers), "f1": 100.0 * f / len(answers)}


# --------------------------------------------------------------------------------- preprocessing


def _tokenize(tokenizer, examples, max_seq_length: int, doc_stride: int):
    pad_right = tokenizer.padding_side == "right"
    return tokenizer(
        [q.lstrip() for q in examples["question"]] if pad_right else examples["context"],
        examples["context"] if pad_right else [q.lstrip() for q in examples["question"]],
        truncation="only_second" if pad_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def train_features(examples, tokenizer, max_seq_length: int = 384, doc_stride: int = 128) -> dict:
    """Windows with start/end token positions of the first gold answer ([CLS] if outside the window)."""
    enc = _tokenize(tokenizer, examples, max_seq_length, doc_stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offs in enumerate(offsets):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        seq_ids = enc.sequence_ids(i)
        ans = examples["answers"][sample_map[i]]
        if len(ans["answer_start"]) == 0:
            starts.append(cls)
            ends.append(cls)
            continue
        a_start = ans["answer_start"][0]
        a_end = a_start + len(ans["text"][0])
        ctx = [k for k, s in enumerate(seq_ids) if s == 1]
        c0, c1 = ctx[0], ctx[-1]
        if not (offs[c0][0] <= a_start and offs[c1][1] >= a_end):
            starts.append(cls)
            ends.append(cls)
            continue
        s = c0
        while s <= c1 and offs[s][0] <= a_start:
            s += 1
        e = c1
        while e >= c0 and offs[e][1] >= a_end:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    enc["start_positions"] = starts
    enc["end_positions"] = ends
    return enc


def eval_features(examples, tokenizer, max_seq_length: int = 384, doc_stride: int = 128) -> dict:
    """Windows that remember their example id and the character offsets of their context tokens."""
    enc = _tokenize(tokenizer, examples, max_seq_length, doc_stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = []
    ctx_index = 1 if tokenizer.padding_side == "right" else 0
    for i in range(len(enc["input_ids"])):
        seq_ids = enc.sequence_ids(i)
        enc["example_id"].append(examples["id"][sample_map[i]])
        enc["offset_mapping"][i] = [o if seq_ids[k] == ctx_index else None for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


# -------------------------------------------------------------------------------- postprocessing


def best_spans(examples, features, start_logits: np.ndarray, end_logits: np.ndarray, n_best: int = 20,
               max_answer_length: int = 30) -> dict[str, str]:
    """Example id -> predicted answer text, searching every window of the example."""
    by_example = collections.defaultdict(list)
    for i, ex_id in enumerate(features["example_id"]):
        by_example[ex_id].append(i)
    predictions = {}
    for ex in examples:
        best, best_score = "", -np.inf
        for fi in by_example.get(ex["id"], []):
            offsets = features["offset_mapping"][fi]
            s_log, e_log = start_logits[fi], end_logits[fi]
            for s in np.argsort(s_log)[-1: -n_best - 1: -1]:
                for e in np.argsort(e_log)[-1: -n_best - 1: -1]:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = s_log[s] + e_log[e]
                    if score > best_score:
                        best_score = score
                        best = ex["context"][offsets[s][0]: offsets[e][1]]
        predictions[ex["id"]] = best
    return predictions
