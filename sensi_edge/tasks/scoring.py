"""``evaluate``: the task metric of a PyTorch folder or an ONNX file, by one code path."""
from __future__ import annotations

from pathlib import Path

from ..errors import SensiEdgeError


def find_tokenizer(path: Path, tokenizer: str | None = None):
    """The tokenizer saved beside the model (export writes it next to every ONNX file)."""
    from transformers import AutoTokenizer

    where = Path(tokenizer) if tokenizer else (path.parent if path.suffix == ".onnx" else path)
    if not (where / "tokenizer_config.json").is_file() and not (where / "tokenizer.json").is_file():
        raise SensiEdgeError(f"no tokenizer files in {where}; pass --tokenizer FOLDER")
    return AutoTokenizer.from_pretrained(str(where))


def check_head(runner, task, path) -> None:
    """A question-answering model scored on a classification task (or the reverse) is a wrong --task."""
    from ..runners import head_of_outputs

    qa_model = head_of_outputs(runner.output_names) == "qa"
    if qa_model != (task.kind == "qa"):
        kind = "question-answering (start/end logits)" if qa_model else "classification (logits)"
        raise SensiEdgeError(f"{path} is a {kind} model but task {task.name} is "
                             f"{'question answering' if task.kind == 'qa' else 'classification'}; pass the task the "
                             "model was trained for")


def evaluate_path(path: str | Path, task_name: str, data: str, split: str | None = None,
                  max_samples: int | None = None, max_seq_length: int | None = None, batch_size: int = 64,
                  threads: int | None = None, tokenizer: str | None = None, **task_overrides) -> dict:
    from .. import checks
    from ..data import load_task_data
    from ..runners import open_runner
    from .evaluators import evaluator_for
    from .presets import get_task

    checks.at_least("--max-samples", max_samples)
    checks.seq_len("--max-seq-length", max_seq_length)
    checks.at_least("--batch-size", batch_size, optional=False)
    checks.threads("--threads", threads)
    path = Path(path)
    if not path.exists():
        raise SensiEdgeError(f"{path} does not exist; pass a model folder or an .onnx file")
    task = get_task(task_name, **{k: v for k, v in task_overrides.items() if v})
    _, rows, task = load_task_data(data, task, split)
    if max_samples:
        rows = rows.select(range(min(max_samples, len(rows))))
    tok = find_tokenizer(path, tokenizer)
    runner = open_runner(path, threads, qa=task.kind == "qa")
    check_head(runner, task, path)
    ev = evaluator_for(task, tok, max_seq_length or task.default_seq_length)
    scored = ev.score(runner, ev.prepare(rows), batch_size).check_finite(path)
    return {"path": str(path), "task": task.name, "data": data, "split": split or task.validation_splits[0],
            "rows": int(len(rows)), "metrics": scored.metrics}
