"""BERT adapter: module names, geometry, mask hook points and physical removal.

Granularity (the "tensor groups" that sensitivity ranks and the plan trims):
- attention group of layer i: its heads. Removing head h removes rows h*d:(h+1)*d of the Q, K
  and V weights/biases and the same columns of the attention-output (O) weight. Q/K/V/O are
  one group because a head only exists in all four together.
- ffn group of layer i: its neurons. Removing neuron j removes row j of the intermediate weight
  and bias and column j of the FFN-output weight.
Masking multiplies the input of O (per head) and of the FFN-output projection (per neuron), which
is exactly what removing those rows/columns computes, so masked and pruned logits agree.
"""
from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from ..cost import Geometry
from ..modeling.modeling_sensi_bert import EmptyAttention


class BertAdapter:
    @staticmethod
    def layers(model):
        return list(model.base_model.encoder.layer)

    @staticmethod
    @contextmanager
    def capture_layer_inputs(model):
        """Within the block every forward pass records the hidden states entering each encoder layer:
        yields a list that holds, after a pass, one tensor per layer (the layer's input)."""
        inputs: list = [None] * len(BertAdapter.layers(model))

        def recorder(i):
            def hook(module, args, kwargs):
                inputs[i] = args[0] if args else kwargs["hidden_states"]
            return hook

        handles = [layer.register_forward_pre_hook(recorder(i), with_kwargs=True)
                   for i, layer in enumerate(BertAdapter.layers(model))]
        try:
            yield inputs
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    @contextmanager
    def start_at_layer(model, start: int, hidden):
        """Within the block a forward pass runs only layers ``start`` onwards, fed ``hidden`` (the input of
        layer ``start`` for this batch, from ``capture_layer_inputs``) in place of the embeddings' output.
        The attention mask, pooler, head and loss are the model's own, so the result equals a full pass
        whenever layers before ``start`` would have produced ``hidden`` -- why sensitivity probes of a
        late layer need not recompute the early ones."""
        encoder = model.base_model.encoder
        full = encoder.layer
        handle = model.base_model.embeddings.register_forward_hook(lambda module, args, output: hidden)
        encoder.layer = nn.ModuleList(list(full)[start:])
        try:
            yield
        finally:
            encoder.layer = full
            handle.remove()

    @staticmethod
    def geometry_from_config(cfg) -> Geometry:
        """The encoder shape a (Sensi)BertConfig describes, without building the model."""
        n = cfg.num_hidden_layers
        heads = getattr(cfg, "layer_num_heads", None) or [cfg.num_attention_heads] * n
        ffn = getattr(cfg, "layer_intermediate_sizes", None) or [cfg.intermediate_size] * n
        return Geometry(cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads, tuple(heads), tuple(ffn))

    @staticmethod
    def geometry(model) -> Geometry:
        cfg = model.config
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        heads, ffn = [], []
        for layer in BertAdapter.layers(model):
            heads.append(0 if isinstance(layer.attention, EmptyAttention) else layer.attention.self.num_attention_heads)
            dense = getattr(layer.intermediate, "dense", None)
            ffn.append(0 if dense is None else dense.out_features)
        return Geometry(cfg.hidden_size, head_dim, tuple(heads), tuple(ffn))

    @staticmethod
    def head_mask_point(layer) -> nn.Module | None:
        """Module whose *input* is the per-head attention context (None when the layer has no heads)."""
        return None if isinstance(layer.attention, EmptyAttention) else layer.attention.output.dense

    @staticmethod
    def ffn_mask_point(layer) -> nn.Module | None:
        """Module whose *input* is the FFN activation (None when the layer has no neurons)."""
        return getattr(layer.output, "dense", None)

    @staticmethod
    def attention_linears(layer):
        sa = layer.attention.self
        return sa.query, sa.key, sa.value, layer.attention.output.dense

    @staticmethod
    def ffn_linears(layer):
        return layer.intermediate.dense, layer.output.dense

    @staticmethod
    def copy_residual_of_empty_attention(src, dst) -> None:
        """A layer that keeps no heads still adds the attention block's output bias and applies its LayerNorm."""
        dst.attention.output.bias.copy_(src.attention.output.dense.bias)
        dst.attention.output.LayerNorm.load_state_dict(src.attention.output.LayerNorm.state_dict())

    @staticmethod
    def copy_residual_of_empty_ffn(src, dst) -> None:
        """A layer that keeps no FFN neurons still adds the FFN output bias and applies its LayerNorm."""
        dst.output.bias.copy_(src.output.dense.bias)
        dst.output.LayerNorm.load_state_dict(src.output.LayerNorm.state_dict())

    @staticmethod
    def trimmed_class(model):
        """The per-layer-sized (SensiBert) class with the same task head as ``model``."""
        from transformers import BertForQuestionAnswering, BertForSequenceClassification

        from ..errors import SensiEdgeError
        from ..modeling import SensiBertForQuestionAnswering, SensiBertForSequenceClassification

        for base, target in ((BertForSequenceClassification, SensiBertForSequenceClassification),
                             (BertForQuestionAnswering, SensiBertForQuestionAnswering)):
            if isinstance(model, base):
                return target
        raise SensiEdgeError(f"cannot trim a {type(model).__name__}: supported heads are sequence classification and QA")

    @staticmethod
    def is_encoder_tensor(name: str) -> bool:
        """Whether a saved tensor belongs to an encoder layer (what the budget counts)."""
        return ".encoder.layer." in name or name.startswith("encoder.layer.")
