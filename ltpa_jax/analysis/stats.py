"""Mean ± sample std, as the tables print them."""

from __future__ import annotations

import math
from typing import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and sample std (ddof=1) of `values`; the std is None for one value."""
  n = len(values)
  mean = sum(values) / n
  if n == 1:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_mean_std(values: Sequence[float | None]) -> str:
  """"26.13 ± 0.23", "26.13" for one value, "-" when any value is missing."""
  if any(v is None for v in values):
    return "-"
  mean, std = mean_std(values)
  return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
