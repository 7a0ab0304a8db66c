"""Datasets by TFDS name, read without TensorFlow into uint8 numpy arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

READ_BATCH = 2048  # records per `__getitems__` call; one by one is ~100x slower.


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...]  # per channel, on [0, 1] pixels
  std: tuple[float, ...]


DATASETS = {
    # Reference statistics of the CIFAR-100 train split (the PyTorch code's constants).
    "cifar100": DatasetInfo(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8, (N, H, W, C)
  labels: np.ndarray  # int32, (N,)


def read_split(source) -> Split:
  """Reads every record of a `tfds.data_source` split, in batches."""
  images, labels = [], []
  for start in range(0, len(source), READ_BATCH):
    records = source.__getitems__(list(range(start, min(start + READ_BATCH, len(source)))))
    images.append(np.stack([r["image"] for r in records]))
    labels.append(np.asarray([r["label"] for r in records], np.int32))
  return Split(np.concatenate(images), np.concatenate(labels))


def load(name: str, data_dir: str | None) -> dict[str, Split]:
  """Returns the train and test splits of dataset `name` from TFDS `data_dir`."""
  sources = tfds.data_source(name, data_dir=data_dir)
  return {split: read_split(sources[split]) for split in ("train", "test")}
