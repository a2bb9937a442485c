"""Physical removal: turn base model + TrimPlan into a really smaller SensiBert model.

The result is a fresh model built from a SensiBertConfig (per-layer head counts and FFN
widths), with the kept rows/columns copied in. ``parity`` checks it against the masked base
model numerically; the number goes into the report.
"""
from __future__ import annotations

import torch

from .arch import adapter_for
from .artifacts import TrimPlan
from .errors import SensiEdgeError
from .masking import MaskSet, attach
from .modeling import SensiBertConfig


def trimmed_config(config, plan: TrimPlan) -> SensiBertConfig:
    d = config.to_dict()
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "layer_num_heads", "layer_intermediate_sizes",
                "pruned_heads"):  # HF's own head pruning is folded into the per-layer sizes
        d.pop(key, None)
    return SensiBertConfig(
        **d, layer_num_heads=list(plan.trimmed.heads), layer_intermediate_sizes=list(plan.trimmed.ffn)
    )


@torch.no_grad()
def apply_plan(model, plan: TrimPlan):
    """A new, physically trimmed model; ``model`` is left untouched."""
    adapter = adapter_for(model)
    if adapter.geometry(model) != plan.dense:
        raise SensiEdgeError(
            f"plan was made for encoder {plan.dense.to_dict()} but the model is {adapter.geometry(model).to_dict()}"
        )
    config = trimmed_config(model.config, plan)
    target = adapter.trimmed_class(model)(config).to(next(model.parameters()).device)
    src_layers, dst_layers = adapter.layers(model), adapter.layers(target)
    # Everything outside the trimmed projections is copied as is (embeddings, LayerNorms, heads).
    own = model.state_dict()
    dst_state = target.state_dict()
    for key, value in dst_state.items():
        if key in own and own[key].shape == value.shape:
            value.copy_(own[key])
    d = plan.dense.head_dim
    for src, dst, heads, neurons in zip(src_layers, dst_layers, plan.keep_heads, plan.keep_neurons):
        o_src = adapter.head_mask_point(src)
        if len(heads) == 0:
            if o_src is not None:
                adapter.copy_residual_of_empty_attention(src, dst)
        else:
            idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads]).to(o_src.weight.device)
            for s, t in zip(adapter.attention_linears(src)[:3], adapter.attention_linears(dst)[:3]):
                t.weight.copy_(s.weight[idx])
                t.bias.copy_(s.bias[idx])
            o_dst = adapter.attention_linears(dst)[3]
            o_dst.weight.copy_(o_src.weight[:, idx])
            o_dst.bias.copy_(o_src.bias)
        out_src = adapter.ffn_mask_point(src)
        if len(neurons) == 0:
            if out_src is not None:
                adapter.copy_residual_of_empty_ffn(src, dst)
        else:
            idx = torch.tensor(list(neurons), device=out_src.weight.device)
            i_src, _ = adapter.ffn_linears(src)
            i_dst, out_dst = adapter.ffn_linears(dst)
            i_dst.weight.copy_(i_src.weight[idx])
            i_dst.bias.copy_(i_src.bias[idx])
            out_dst.weight.copy_(out_src.weight[:, idx])
            out_dst.bias.copy_(out_src.bias)
    target.eval()
    return target


@torch.no_grad()
def parity(base_model, trimmed_model, plan: TrimPlan, batch: dict) -> float:
    """Max |logit difference| between the masked base model and the trimmed model on ``batch``."""
    base_model.eval()
    trimmed_model.eval()
    with attach(base_model, MaskSet.from_plan(plan)):
        ref = _logits(base_model(**batch))
    out = _logits(trimmed_model(**batch))
    return float((ref - out).abs().max())


def _logits(output) -> torch.Tensor:
    if hasattr(output, "logits"):
        return output.logits
    return torch.cat([output.start_logits, output.end_logits], dim=-1)
