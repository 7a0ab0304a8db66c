"""Small in-memory datasets for unit tests."""

import numpy as np

from ltpa_jax.data import datasets

INFO = datasets.DatasetInfo(10, (32, 32, 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def colour_split(n: int, seed: int = 0, num_classes: int = 10) -> datasets.Examples:
  """Images whose class is visible: a per-class colour plus noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  colours = np.random.default_rng(99).integers(0, 256, (num_classes, 1, 1, 3))
  noise = rng.integers(-40, 40, (n, 32, 32, 3))
  return datasets.Examples(np.clip(colours[labels] + noise, 0, 255).astype(np.uint8), labels)


def noise_split(n: int, seed: int) -> datasets.Examples:
  """Random images and labels: nothing to learn."""
  rng = np.random.default_rng(seed)
  return datasets.Examples(rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                           rng.integers(0, 10, n).astype(np.int32))


def dataset(train: datasets.Examples, test: datasets.Examples, info=INFO,
            name: str = "fake") -> datasets.Dataset:
  """A Dataset of these splits, labelled "fake", its classes named "0", "1", ..."""
  return datasets.Dataset(name, info, "fake", [str(i) for i in range(info.num_classes)],
                          len(train.labels), train, test)
