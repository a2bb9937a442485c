"""Config for a BERT whose layers keep different numbers of heads and FFN neurons.

BertConfig has one head count and one FFN width for every layer, so a physically trimmed
model cannot be described by it. This file is copied next to every saved model (HF
"remote code"), so it must import nothing but transformers.

``model_type`` is ``bert``, with ``auto_map`` naming these classes (the layout of custom-code BERTs on
the Hub). Why not a type of our own: transformers 5's AutoTokenizer always loads the model's config,
and a config type transformers does not know makes it ask "[y/N]" on stdin before running the custom
code -- for a tokenizer that is a stock BertTokenizer. Under ``bert`` a bare ``AutoConfig`` /
``AutoTokenizer`` call reads a BertConfig and asks nothing; the model classes still need
``trust_remote_code=True`` (or sensi-edge's own loader), because BertConfig has one width per
encoder. Folders saved before this (``sensi_bert``) still load: ``get_config_dict`` reads that type
as ``bert``.
"""
from transformers import BertConfig

LEGACY_MODEL_TYPE = "sensi_bert"


class SensiBertConfig(BertConfig):
    model_type = "bert"

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == LEGACY_MODEL_TYPE:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

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
