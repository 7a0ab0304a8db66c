"""Datasets by TFDS name, prepared and read without TensorFlow into uint8 numpy arrays."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from ltpa_jax.data import tfds_builders
from ltpa_jax.data.types import DatasetInfo, Examples
from ltpa_jax.data.tfds_builders import DatasetUnavailableError

READ_BATCH = 2048  # records per `__getitems__` call; one by one is ~100x slower.
SPLITS = ("train", "test")


DATASETS = {
    # CIFAR-100: the constants of the reference table's code (iversonicter/Learn-to-pay-attention,
    # main.py). SaoYan's train.py uses (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761)
    # (configs/saoyan_att_*.py, through config.data_mean and config.data_std).
    "cifar100": DatasetInfo(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # The others: statistics of their train splits.
    "cifar10": DatasetInfo(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn_cropped": DatasetInfo(
        10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    ),
    # Stored 28x28; the model zero-pads it to 32x32 (not done here).
    "fashion_mnist": DatasetInfo(10, (28, 28, 1), (0.2860,), (0.3530,)),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset as every command needs it, read once: its splits, statistics and names."""
  name: str
  info: DatasetInfo
  label: str  # how reports name the data, e.g. "CIFAR-100 (re-split)"
  class_names: list[str] | None  # None: not recorded, or the dataset is not prepared
  num_train: int | None  # training examples a run uses; None: not prepared, unknown
  train: Examples | None = None  # None: not read
  test: Examples | None = None


def with_statistics(dataset: Dataset, mean: Sequence[float] | None,
                    std: Sequence[float] | None) -> Dataset:
  """`dataset` normalised by `mean` and `std` (per channel, on [0, 1] pixels) where given."""
  info = dataset.info
  info = dataclasses.replace(info, mean=tuple(info.mean if mean is None else mean),
                             std=tuple(info.std if std is None else std))
  return dataclasses.replace(dataset, info=info)


def dataset_info(name: str) -> DatasetInfo:
  """`DATASETS[name]`, with a clear error for an unknown name."""
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; supported: {', '.join(sorted(DATASETS))}.")
  return DATASETS[name]


def read_split(source, count: int = 0) -> Examples:
  """Reads the first `count` records (0: every record) of a `tfds.data_source` split, in batches."""
  stop = min(count, len(source)) if count else len(source)
  images, labels = [], []
  for start in range(0, stop, READ_BATCH):
    records = source.__getitems__(list(range(start, min(start + READ_BATCH, stop))))
    images.append(np.stack([r["image"] for r in records]))
    labels.append(np.asarray([r["label"] for r in records], np.int32))
  return Examples(np.concatenate(images), np.concatenate(labels))


def load(
    name: str, data_dir: str | None, manual_dir: str | None = None, prepare: bool = True,
    train_examples: int = 0, splits: Sequence[str] = SPLITS
) -> Dataset:
  """Dataset `name` from TFDS `data_dir`, with the `splits` given read into memory.

  When `name` is not prepared there and a split is asked for, prepares it first if `prepare` is
  set (TF-free, from the source files in `manual_dir` or downloaded; see
  `tfds_builders.prepare`); but a `data_dir` that does not exist is refused unless `manual_dir`
  is given: a download into it is more likely a mistyped path than a wish. With no split asked
  for, nothing is prepared: an unprepared dataset has no class names or sizes. With
  `train_examples`, only the first that many training records are used.
  """
  info = dataset_info(name)
  unknown = set(splits) - set(SPLITS)
  if unknown:
    raise ValueError(f"Unknown splits {sorted(unknown)}; there are {SPLITS}.")
  if not _is_prepared(name, data_dir):
    if not splits:
      return Dataset(name, info, DISPLAY_NAMES.get(name, name), None, None)
    _prepare(name, data_dir, manual_dir, prepare)
  sources = tfds.data_source(name, data_dir=data_dir)
  counts = {"train": train_examples, "test": 0}
  read = {split: _checked(name, split, info, _read(name, sources[split], counts[split]))
          for split in splits}
  num_train = len(sources["train"])
  return Dataset(
      name, info, _label(name, data_dir),
      list(sources["test"].dataset_info.features["label"].names) or None,
      min(train_examples, num_train) if train_examples else num_train, **read)


def ensure_prepared(name: str, data_dir: str | None, manual_dir: str | None = None) -> None:
  """Prepares dataset `name` in `data_dir` as `load` would, or raises DatasetUnavailableError
  saying why it will not; reads no record. A command that trains several configs calls it for
  each before training any."""
  dataset_info(name)
  if not _is_prepared(name, data_dir):
    _prepare(name, data_dir, manual_dir, prepare=True)


def _is_prepared(name: str, data_dir: str | None) -> bool:
  missing_dir = bool(data_dir) and not os.path.isdir(data_dir)  # TFDS would log a warning
  return not missing_dir and tfds_builders.is_prepared(name, data_dir)


def _prepare(name: str, data_dir: str | None, manual_dir: str | None, prepare: bool) -> None:
  """Prepares `name` in `data_dir` (see `load`), or says why it will not."""
  if not prepare:
    files = ", ".join(tfds_builders.source_files(name))
    raise DatasetUnavailableError(
        f"Dataset {name!r} is not prepared in data_dir {data_dir}. Load it with prepare=True "
        f"(from these files in manual_dir, or downloaded: {files})."
    )
  if data_dir and not os.path.isdir(data_dir) and not manual_dir:  # a typo?
    raise DatasetUnavailableError(
        f"data_dir {data_dir} does not exist (in {os.getcwd()}). Set config.data_dir to the "
        f"folder that holds the prepared datasets, or create it to have {name!r} downloaded and "
        "prepared there (or set config.manual_dir to the folder of its official files)."
    )
  tfds_builders.prepare(name, data_dir, manual_dir)


def _read(name: str, source, count: int) -> Examples:
  """`read_split`, naming the files and the fix when they cannot be read."""
  try:
    return read_split(source, count)
  except (RuntimeError, OSError, ValueError) as e:
    files = ", ".join(str(f) for f in source.dataset_info.splits[source.split].filepaths)
    raise DatasetUnavailableError(
        f"Cannot read {name!r} split {source.split!r} from {files} ({e}). The prepared files are "
        f"truncated or corrupted: delete the dataset folder {source.dataset_info.data_dir} and "
        "prepare again."
    ) from e


def _checked(name: str, split: str, info: DatasetInfo, data: Examples) -> Examples:
  """`data`, after checking its images are uint8 of `info.image_shape` and its labels in range."""
  if data.images.dtype != np.uint8 or data.images.shape[1:] != info.image_shape:
    raise ValueError(
        f"Dataset {name!r} split {split!r}: expected uint8 images of shape {info.image_shape}, "
        f"got {data.images.dtype} {data.images.shape[1:]}."
    )
  if len(data.labels) and not 0 <= data.labels.min() <= data.labels.max() < info.num_classes:
    raise ValueError(f"Dataset {name!r} split {split!r}: labels outside 0..{info.num_classes - 1}.")
  return data


DISPLAY_NAMES = {"cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "svhn_cropped": "SVHN",
                 "fashion_mnist": "Fashion-MNIST"}


def _label(name: str, data_dir: str | None) -> str:
  """How reports name the prepared data, e.g. "CIFAR-100 (re-split)" for the offline re-split.

  Reads the description written on disk (TFDS's dataset_info keeps the one from its code).
  """
  path = os.path.join(tfds.builder(name, data_dir=data_dir).data_dir, "dataset_info.json")
  with open(path) as f:
    description = json.load(f).get("description", "")
  display = DISPLAY_NAMES.get(name, name)
  return f"{display} (re-split)" if "RE-SPLIT" in description else display
