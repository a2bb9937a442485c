"""Parameter and FLOP accounting for a (possibly irregular) BERT encoder. Pure arithmetic.

What counts (stated once, used everywhere):
- "encoder parameters" are every parameter inside the encoder layers: Q/K/V/O weights and
  biases, FFN weights and biases, both LayerNorms. Embeddings, pooler and task head are NOT
  counted (they do not shrink with trimming); ``total`` counts are reported beside them.
- "encoder FLOPs" are the multiply-adds (x2) of the encoder's matrix products for one sequence
  of ``seq_len`` tokens: Q/K/V/O projections, QK^T, attention x V and both FFN matrices.
  Softmax, GELU, LayerNorm and bias adds are left out (< 1% for BERT shapes).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Shape of a BERT encoder: per-layer head counts and FFN widths around a fixed hidden size."""

    hidden: int
    head_dim: int
    heads: tuple[int, ...]
    ffn: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    def with_sizes(self, heads, ffn) -> "Geometry":
        return Geometry(self.hidden, self.head_dim, tuple(int(h) for h in heads), tuple(int(f) for f in ffn))

    def to_dict(self) -> dict:
        return {"hidden": self.hidden, "head_dim": self.head_dim, "heads": list(self.heads), "ffn": list(self.ffn)}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(d["hidden"], d["head_dim"], tuple(d["heads"]), tuple(d["ffn"]))


# Cost of one removable unit, and the fixed cost of a layer that nothing can remove.
def head_params(g: Geometry) -> int:
    return 3 * (g.hidden * g.head_dim + g.head_dim) + g.head_dim * g.hidden


def neuron_params(g: Geometry) -> int:
    return g.hidden + 1 + g.hidden


def layer_fixed_params(g: Geometry) -> int:
    # attention-output bias + LayerNorm, FFN-output bias + LayerNorm
    return 3 * g.hidden + 3 * g.hidden


def head_flops(g: Geometry, seq_len: int) -> int:
    projections = 2 * seq_len * g.hidden * g.head_dim * 4
    scores_and_context = 2 * seq_len * seq_len * g.head_dim * 2
    return projections + scores_and_context


def neuron_flops(g: Geometry, seq_len: int) -> int:
    return 2 * seq_len * g.hidden * 2


def encoder_params(g: Geometry) -> int:
    return sum(
        layer_fixed_params(g) + h * head_params(g) + f * neuron_params(g) for h, f in zip(g.heads, g.ffn)
    )


def encoder_flops(g: Geometry, seq_len: int) -> int:
    return sum(h * head_flops(g, seq_len) + f * neuron_flops(g, seq_len) for h, f in zip(g.heads, g.ffn))


def unit_cost(g: Geometry, kind: str, budget_kind: str, seq_len: int) -> int:
    """Cost of one head ("attention") or one neuron ("ffn") in the budget's currency."""
    if budget_kind == "params":
        return head_params(g) if kind == "attention" else neuron_params(g)
    return head_flops(g, seq_len) if kind == "attention" else neuron_flops(g, seq_len)


def encoder_cost(g: Geometry, budget_kind: str, seq_len: int) -> int:
    return encoder_params(g) if budget_kind == "params" else encoder_flops(g, seq_len)
