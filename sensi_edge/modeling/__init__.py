"""Trimmed-BERT model classes, registered with the transformers Auto classes.

Registering here lets sensi-edge load its own checkpoints without trust_remote_code;
``register_for_auto_class`` makes ``save_pretrained`` copy the two modules next to the
weights and write ``auto_map``, so stock transformers loads them with trust_remote_code.
"""
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from .configuration_sensi_bert import SensiBertConfig
from .modeling_sensi_bert import (
    SensiBertForQuestionAnswering,
    SensiBertForSequenceClassification,
    SensiBertModel,
)

AutoConfig.register(SensiBertConfig.model_type, SensiBertConfig, exist_ok=True)
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
