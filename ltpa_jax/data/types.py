"""The data's types, light to import (no TFDS): what the training maths needs of a dataset."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...]  # per channel, on [0, 1] pixels
  std: tuple[float, ...]


class Examples(NamedTuple):
  """Images (N, H, W, C) uint8 and labels (N,) int32: numpy on the host, jax arrays on devices."""
  images: Any
  labels: Any
