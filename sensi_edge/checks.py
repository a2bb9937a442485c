"""Range checks for numeric settings, shared by every config so each rule reads the same everywhere.

NaN fails every comparison, so each check is written as "value is inside" rather than "value is
outside": a NaN can never slip through as "not too big".
"""
from __future__ import annotations

import math

from .errors import SensiEdgeError


def at_least(flag: str, value, minimum: int = 1, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not value >= minimum:
        raise SensiEdgeError(f"{flag} must be an integer >= {minimum}, got {value}")


def in_range(flag: str, value, lo: float, hi: float, lo_open: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (lo < value if lo_open else lo <= value) \
        and value <= hi
    if not ok:
        raise SensiEdgeError(f"{flag} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value}")


def threads(flag: str, values) -> None:
    for t in ([values] if isinstance(values, int) or values is None else values):
        if t is not None:
            in_range(flag, t, 1, 256)


def seq_len(flag: str, value, max_positions: int | None = None, optional: bool = True) -> None:
    """Between 8 tokens (CLS, SEP and a few words) and the model's position table."""
    in_range(flag, value, 8, 512, optional=optional)
    if value is not None and max_positions is not None and value > max_positions:
        raise SensiEdgeError(f"{flag} {value} exceeds the model's {max_positions} positions; lower it")
