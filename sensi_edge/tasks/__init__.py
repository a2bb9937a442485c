"""Everything about a task: its preset and columns, tokenisation, metrics, and scoring a model on it.

What lives where (the one place to look when a task changes or a new one is added):

- ``presets.py``: ``TaskSpec`` and the presets (GLUE, generic ``text-classification``, SQuAD), ``get_task``
  with column / label overrides, ``resolve_columns``, ``default_seq_len``, the classification metrics.
- ``tokenise.py``: tokenisation and padded batches for classification rows.
- ``qa.py``: extractive question answering (SQuAD v1.1): windows over long contexts, span search, EM/F1.
- ``evaluators.py``: one evaluator per task kind (``ClassificationEval``, ``QAEval``, ``evaluator_for``), so
  compress, export and evaluate prepare features and score a runner (PyTorch or ONNX) by one code path.
- ``scoring.py``: the ``evaluate`` command (``evaluate_path``): the task metric of a model folder or an .onnx file.

Only the presets are imported here (they need numpy only): bench and bundle import ``default_seq_len`` at
module load and must not pull in torch, transformers or datasets. The other modules load those, so they are
imported where they are used (``from sensi_edge.tasks.evaluators import evaluator_for``).
"""
from .presets import PRESETS, TaskSpec, compute_metrics, default_seq_len, get_task, resolve_columns

__all__ = ["PRESETS", "TaskSpec", "compute_metrics", "default_seq_len", "get_task", "resolve_columns"]
