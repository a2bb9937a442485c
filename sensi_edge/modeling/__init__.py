"""Trimmed-BERT model classes, registered with the transformers Auto classes.

The model classes are registered for SensiBertConfig, so an Auto class given that config (what
``loading.load_config`` returns for a trimmed folder) builds ours without trust_remote_code. The
config itself is not registered under its type: its ``model_type`` is ``bert`` (see
configuration_sensi_bert.py), which must keep meaning BertConfig for every dense model; only the
legacy ``sensi_bert`` type is.
``register_for_auto_class`` makes ``save_pretrained`` copy the two modules next to the weights and
write ``auto_map``, so stock transformers loads them with trust_remote_code.
"""
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from .configuration_sensi_bert import LEGACY_MODEL_TYPE, SensiBertConfig
from .modeling_sensi_bert import (
    SensiBertForQuestionAnswering,
    SensiBertForSequenceClassification,
    SensiBertModel,
)


class LegacySensiBertConfig(SensiBertConfig):
    """Folders saved before the config said ``bert`` say ``sensi_bert``. Registered under that type (in this
    process only), so AutoConfig / AutoTokenizer calls inside sensi-edge read them without transformers 5's
    remote-code prompt; ``loading.load_config`` turns them into a SensiBertConfig for the model classes."""

    model_type = LEGACY_MODEL_TYPE


AutoConfig.register(LEGACY_MODEL_TYPE, LegacySensiBertConfig, exist_ok=True)
AutoModel.register(SensiBertConfig, SensiBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(SensiBertConfig, SensiBertForSequenceClassification, exist_ok=True)
AutoModelForQuestionAnswering.register(SensiBertConfig, SensiBertForQuestionAnswering, exist_ok=True)

SensiBertConfig.register_for_auto_class()
SensiBertModel.register_for_auto_class("AutoModel")
SensiBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
SensiBertForQuestionAnswering.register_for_auto_class("AutoModelForQuestionAnswering")

__all__ = [
    "SensiBertConfig",
    "SensiBertModel",
    "SensiBertForSequenceClassification",
    "SensiBertForQuestionAnswering",
]
