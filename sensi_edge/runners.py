"""One inference interface over PyTorch models and ONNX Runtime sessions.

Scoring, parity checks and benchmarks all go through ``Runner.__call__(batch) -> outputs``,
so a PyTorch folder and an ONNX file are measured by the same code path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle_runtime import ort_session
from .errors import SensiEdgeError, first_line

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def output_names(model) -> tuple[str, ...]:
    """What a PyTorch model's head returns, named as the ONNX graph and optimum name them."""
    return ("start_logits", "end_logits") if hasattr(model, "qa_outputs") else ("logits",)


def head_of_outputs(outputs) -> str:
    """'qa' or 'classification': what a model's (or ONNX graph's) outputs say it is."""
    return "qa" if "start_logits" in outputs else "classification"


def head_of_config(config) -> str | None:
    """'qa', 'classification', or None for a checkpoint without a task head (BertModel, BertForMaskedLM): what
    the saved architectures say. One answer to "is this a QA model?" for loading, bench and export."""
    archs = getattr(config, "architectures", None) or []
    if any("QuestionAnswering" in a for a in archs):
        return "qa"
    return "classification" if any("SequenceClassification" in a for a in archs) else None


class TorchRunner:
    def __init__(self, model):
        import torch

        self.model = model.eval()
        self._torch = torch
        self.output_names = output_names(model)
        self.device = next(model.parameters()).device  # scored where it sits: a model on a GPU is scored there

    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.no_grad():
            out = self.model(**{k: torch.as_tensor(np.asarray(v)).to(self.device)
                                for k, v in batch.items() if k in INPUT_NAMES})
        return {name: getattr(out, name).float().cpu().numpy() for name in self.output_names}


class OrtRunner:
    def __init__(self, path: Path, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise SensiEdgeError(f"ONNX file {path} does not exist")
        try:
            self.session = ort_session(path, threads or 0)
        except Exception as exc:
            raise SensiEdgeError(f"cannot load ONNX file {path} ({first_line(exc, 120)}); pass a model*.onnx written by "
                                 "sensi-edge export") from exc
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feed)))


def open_runner(path: str | Path, threads: int | None = None, qa: bool | None = None):
    """TorchRunner for a model folder, OrtRunner for an .onnx file.

    ``qa`` picks the head of a folder (the task knows it; a bare BertModel checkpoint does not);
    None reads it from the checkpoint's architectures.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return OrtRunner(path, threads)
    if not (path / "config.json").is_file():
        raise SensiEdgeError(f"{path} is neither an .onnx file nor a model folder with config.json; pass a compress "
                             "OUT/model folder or an exported .onnx file")
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    from . import modeling  # noqa: F401
    from .loading import load_config

    if threads:
        torch.set_num_threads(threads)
    config = load_config(str(path))
    archs = getattr(config, "architectures", None) or []
    head = head_of_config(config)
    has_qa, has_cls = head == "qa", head == "classification"
    if qa is None:
        qa = has_qa
    elif (qa and has_cls) or (not qa and has_qa):
        # loading it with the other head would score a randomly initialised head, silently
        raise SensiEdgeError(f"{path} is a {'classification' if has_cls else 'question-answering'} model ({archs[0]}) "
                             f"but the task is {'question answering' if qa else 'classification'}; pass the task the "
                             "model was trained for")
    cls = AutoModelForQuestionAnswering if qa else AutoModelForSequenceClassification
    try:
        return TorchRunner(cls.from_pretrained(str(path), config=config))
    except Exception as exc:
        raise SensiEdgeError(f"cannot load model from {path}: {first_line(exc)}") from exc
