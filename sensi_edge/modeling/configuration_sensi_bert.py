"""Config for a BERT whose layers keep different numbers of heads and FFN neurons.

BertConfig has one head count and one FFN width for every layer, so a physically trimmed
model cannot be described by it. This file is copied next to every saved model (HF
"remote code"), so it must import nothing but transformers.
"""
from transformers import BertConfig


class SensiBertConfig(BertConfig):
    model_type = "sensi_bert"

    def __init__(self, layer_num_heads=None, layer_intermediate_sizes=None, **kwargs):
        super().__init__(**kwargs)
        n = self.num_hidden_layers
        # num_attention_heads stays the *original* head count: it fixes the head width
        # (hidden_size / num_attention_heads), which trimming never changes.
        self.layer_num_heads = list(layer_num_heads) if layer_num_heads is not None else [self.num_attention_heads] * n
        self.layer_intermediate_sizes = (
            list(layer_intermediate_sizes) if layer_intermediate_sizes is not None else [self.intermediate_size] * n
        )
        if len(self.layer_num_heads) != n or len(self.layer_intermediate_sizes) != n:
            raise ValueError(
                f"layer_num_heads / layer_intermediate_sizes need {n} entries (one per layer), got "
                f"{len(self.layer_num_heads)} / {len(self.layer_intermediate_sizes)}"
            )
