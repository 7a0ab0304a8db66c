"""Small in-memory datasets for unit tests."""

import numpy as np

from ltpa_jax import datasets

INFO = datasets.DatasetInfo(10, (32, 32, 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def colour_split(n: int, seed: int = 0, num_classes: int = 10) -> datasets.Split:
  """Images whose class is visible: a per-class colour plus noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  colours = np.random.default_rng(99).integers(0, 256, (num_classes, 1, 1, 3))
  noise = rng.integers(-40, 40, (n, 32, 32, 3))
  return datasets.Split(np.clip(colours[labels] + noise, 0, 255).astype(np.uint8), labels)
