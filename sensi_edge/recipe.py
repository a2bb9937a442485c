"""The fine-tuning recipe: a light module (no torch, no transformers), so configs and the CLI can name it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .options import option

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning recipe; the dense baseline and the trimmed model use the same one.

    ``batch_size`` is the global batch: under torchrun / accelerate launch with N processes each takes
    batch_size / N rows of every batch (accelerate's ``split_batches``), so the steps, the rows each step
    sees and hence the result do not depend on how many processes train."""

    epochs: float = option(3.0, help="fine-tuning epochs (dense baseline and trimmed model alike)")
    learning_rate: float = option(5e-5, help="peak learning rate (linear decay after a warm-up)")
    batch_size: int = option(32, help="global batch: under torchrun / accelerate launch split over the processes")
    weight_decay: float = option(0.01, cli=False)
    warmup_ratio: float = option(0.06, cli=False)
    seed: int = option(42, help="seed of the row order, the calibration rows and the fine-tunes")
    save_steps: int = option(200, cli=False)
    # fp32 | bf16 | fp16 (mixed precision, through the Trainer; fp16 needs a GPU); the CLI's --bf16 / --fp16
    precision: str = option("fp32", cli=False, choices=PRECISIONS)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Refuse values that would train nothing or diverge, before anything is written (NaN fails every test)."""
        from .errors import SensiEdgeError

        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise SensiEdgeError(f"--epochs must be a number > 0, got {self.epochs}")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1):
            raise SensiEdgeError(f"--learning-rate must be in (0, 1), got {self.learning_rate:g} (a typo for 5e-5?)")
        if self.batch_size < 1:
            raise SensiEdgeError(f"--batch-size must be >= 1, got {self.batch_size}")
        if isinstance(self.save_steps, bool) or not isinstance(self.save_steps, int) or self.save_steps < 1:
            raise SensiEdgeError(f"save_steps must be an integer >= 1, got {self.save_steps}")
        if not 0 <= self.seed < 2 ** 32:
            raise SensiEdgeError(f"--seed must be in [0, 2^32), got {self.seed}")
        if self.precision not in PRECISIONS:
            raise SensiEdgeError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.precision == "fp16":
            import torch

            if not torch.cuda.is_available():
                raise SensiEdgeError("--fp16 needs a CUDA GPU (none is visible); use --bf16 on a CPU or drop it")
