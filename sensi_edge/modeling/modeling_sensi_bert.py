"""BERT models with per-layer head counts and FFN widths (physically trimmed).

Copied next to every saved model so that stock
``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`` works
without sensi-edge installed: import nothing but torch and transformers here.

A layer trimmed to 0 heads (or 0 neurons) keeps only what survives the trim: the output bias
and the LayerNorm. It gets explicit bias-only modules instead of zero-width Linear layers,
because zero-sized tensors break ONNX export and some runtimes.
"""
import torch
from torch import nn
from transformers import BertForQuestionAnswering, BertForSequenceClassification, BertModel

from .configuration_sensi_bert import SensiBertConfig


class BiasOnlyResidual(nn.Module):
    """What is left of a projection + residual + LayerNorm when the projection has no inputs."""

    def __init__(self, config):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(config.hidden_size))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor=None):
        residual = hidden_states if input_tensor is None else input_tensor
        return self.LayerNorm(self.dropout(self.bias.expand_as(residual)) + residual)


class EmptyAttention(nn.Module):
    """An attention block with every head removed: output = LayerNorm(x + o_bias)."""

    def __init__(self, config):
        super().__init__()
        self.output = BiasOnlyResidual(config)

    def forward(self, hidden_states, *args, **kwargs):
        # (output, attention weights): transformers 5 unpacks exactly two values; 4.57 reads [0] and
        # passes the rest on as the (absent) attention weights.
        return self.output(hidden_states), None


class EmptyIntermediate(nn.Module):
    """An FFN with every neuron removed has no intermediate activation to compute."""

    def forward(self, hidden_states):
        return hidden_states


def resize_encoder(bert: BertModel, config: SensiBertConfig) -> None:
    """Give each encoder layer the head count and FFN width its config names."""
    hidden = config.hidden_size
    head_dim = hidden // config.num_attention_heads
    for layer, heads, width in zip(bert.encoder.layer, config.layer_num_heads, config.layer_intermediate_sizes):
        if heads == 0:
            layer.attention = EmptyAttention(config)
        elif heads != config.num_attention_heads:
            sa = layer.attention.self
            sa.query, sa.key, sa.value = (nn.Linear(hidden, heads * head_dim) for _ in range(3))
            sa.num_attention_heads = heads
            sa.all_head_size = heads * head_dim
            layer.attention.output.dense = nn.Linear(heads * head_dim, hidden)
        if width == 0:
            layer.intermediate = EmptyIntermediate()
            layer.output = BiasOnlyResidual(config)
        elif width != config.intermediate_size:
            layer.intermediate.dense = nn.Linear(hidden, width)
            layer.output.dense = nn.Linear(width, hidden)


class SensiBertModel(BertModel):
    config_class = SensiBertConfig

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        resize_encoder(self, config)
        self.post_init()


class SensiBertForSequenceClassification(BertForSequenceClassification):
    config_class = SensiBertConfig

    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.bert, config)
        self.post_init()


class SensiBertForQuestionAnswering(BertForQuestionAnswering):
    config_class = SensiBertConfig

    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.bert, config)
        self.post_init()
