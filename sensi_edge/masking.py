"""Apply a trim as masks on a live model (for sensitivity probes and trimmed fine-tuning).

Masks are plain tensors multiplied into the inputs of the attention-output and FFN-output
projections by forward pre-hooks, so they work with any attention implementation (eager/SDPA),
never enter the state dict, and can carry gradients for importance estimation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .arch import adapter_for
from .artifacts import TrimPlan


@dataclass
class MaskSet:
    heads: list[torch.Tensor]  # [layer] -> (num_heads,)
    neurons: list[torch.Tensor]  # [layer] -> (ffn_width,)

    @classmethod
    def ones(cls, geometry, requires_grad: bool = False) -> "MaskSet":
        return cls(
            [torch.ones(h, requires_grad=requires_grad) for h in geometry.heads],
            [torch.ones(f, requires_grad=requires_grad) for f in geometry.ffn],
        )

    @classmethod
    def from_plan(cls, plan: TrimPlan) -> "MaskSet":
        masks = cls.ones(plan.dense)
        masks.set_keep(plan.keep_heads, plan.keep_neurons)
        return masks

    def set_keep(self, keep_heads, keep_neurons) -> None:
        """Overwrite mask values in place (hooks hold references to these tensors)."""
        with torch.no_grad():
            for m, keep in zip(self.heads + self.neurons, list(keep_heads) + list(keep_neurons)):
                m.zero_()
                if len(keep):
                    m[list(keep)] = 1.0


class AttachedMasks:
    """Context manager / handle: masks hooked into a model until ``remove()``."""

    def __init__(self, model, masks: MaskSet):
        adapter = adapter_for(model)
        self.masks = masks
        self._handles = []
        geometry = adapter.geometry(model)
        for i, layer in enumerate(adapter.layers(model)):
            point = adapter.head_mask_point(layer)
            if point is not None:
                self._handles.append(point.register_forward_pre_hook(_head_hook(masks.heads, i, geometry.head_dim)))
            point = adapter.ffn_mask_point(layer)
            if point is not None:
                self._handles.append(point.register_forward_pre_hook(_neuron_hook(masks.neurons, i)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self.masks

    def __exit__(self, *exc):
        self.remove()


def _head_hook(head_masks, layer: int, head_dim: int):
    def hook(module, args):
        m = head_masks[layer].to(device=args[0].device, dtype=args[0].dtype).repeat_interleave(head_dim)
        return (args[0] * m,) + tuple(args[1:])

    return hook


def _neuron_hook(neuron_masks, layer: int):
    def hook(module, args):
        return (args[0] * neuron_masks[layer].to(device=args[0].device, dtype=args[0].dtype),) + tuple(args[1:])

    return hook


def attach(model, masks: MaskSet) -> AttachedMasks:
    return AttachedMasks(model, masks)
