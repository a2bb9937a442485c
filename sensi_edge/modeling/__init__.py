"""Trimmed-BERT model classes, registered with the transformers Auto classes.

The model classes are registered for SensiBertConfig, so an Auto class given that config (what
``loading.load_config`` returns for a trimmed folder) builds ours without trust_remote_code. The
config itself is not registered with AutoConfig: its ``model_type`` is ``bert`` (see
configuration_sensi_bert.py), which must keep meaning BertConfig for every dense model.
``register_for_auto_class`` makes ``save_pretrained`` copy the two modules next to the weights and
write ``auto_map``, so stock transformers loads them with trust_remote_code.
"""
from transformers import AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from .configuration_sensi_bert import SensiBertConfig
from .modeling_sensi_bert import (
    SensiBertForQuestionAnswering,
    SensiBertForSequenceClassification,
    SensiBertModel,
)

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
