"""datasets.load: preparation on demand, validation, clear errors, and the real datasets."""

import dataclasses
import os
import pathlib

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

from ltpa_jax.data import datasets
from ltpa_jax.data import tfds_builders


def _snapshot(path):
  """{path: (size, mtime)} of everything under `path`."""
  stats = {p: p.stat() for p in pathlib.Path(path).rglob("*")}
  return {p: (s.st_size, s.st_mtime_ns) for p, s in stats.items()}


def _prepared_fake(tmp_path, fake_fashion_mnist):
  manual_dir, splits = fake_fashion_mnist
  data_dir = str(tmp_path / "data")
  tfds_builders.prepare("fashion_mnist", data_dir, manual_dir=str(manual_dir), download=False)
  return data_dir, splits


def test_dataset_infos_match_their_image_shapes():
  assert set(datasets.DATASETS) == set(tfds_builders.BUILDERS)
  for info in datasets.DATASETS.values():
    assert len(info.mean) == len(info.std) == info.image_shape[-1]
  assert datasets.DATASETS["fashion_mnist"].image_shape == (28, 28, 1)


def test_unknown_name_lists_the_supported_ones(tmp_path):
  supported = "cifar10, cifar100, fashion_mnist, svhn_cropped"
  with pytest.raises(ValueError, match=f"'imagenet'.*{supported}"):
    datasets.load("imagenet", str(tmp_path))


def test_load_prepares_from_manual_dir_then_only_reads(tmp_path, fake_fashion_mnist):
  manual_dir, splits = fake_fashion_mnist
  data_dir = str(tmp_path / "data")
  data = datasets.load("fashion_mnist", data_dir, manual_dir=str(manual_dir))
  for split, (images, labels) in splits.items():
    read = getattr(data, split)
    assert read.images.dtype == np.uint8 and read.labels.dtype == np.int32
    got = sorted(zip(read.labels.tolist(), map(bytes, read.images)))
    assert got == sorted(zip(labels.tolist(), map(bytes, images)))
  before = _snapshot(data_dir)
  datasets.load("fashion_mnist", data_dir, prepare=False)
  assert _snapshot(data_dir) == before


def test_a_failed_download_names_the_files_to_provide(tmp_path, monkeypatch):
  def offline(url, **kwargs):
    raise requests.exceptions.ConnectionError(f"offline (test): {url}")

  monkeypatch.setattr(requests, "head", lambda url, **kwargs: None)  # the host answers, but
  monkeypatch.setattr(downloader, "_open_url", offline)  # the download fails; nothing goes online
  data_dir, manual_dir = tmp_path / "data", tmp_path / "manual"
  manual_dir.mkdir()
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    datasets.load("cifar10", str(data_dir), manual_dir=str(manual_dir))
  for text in (str(data_dir), str(manual_dir), "cifar-10-binary.tar.gz"):
    assert text in str(error.value)
  assert not data_dir.exists()


def test_an_unreachable_host_fails_at_once_without_downloading(tmp_path, monkeypatch):
  probes = []

  def unreachable(url, **kwargs):
    probes.append(url)
    raise requests.exceptions.ConnectionError(f"offline (test): {url}")

  def download(url, **kwargs):
    raise AssertionError(f"a download was attempted: {url}")

  monkeypatch.setattr(requests, "head", unreachable)
  monkeypatch.setattr(downloader, "_open_url", download)
  data_dir = tmp_path / "data"
  data_dir.mkdir()  # a data_dir that does not exist is refused before any probe
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    datasets.load("fashion_mnist", str(data_dir))
  assert len(probes) == 1  # one request to the one host of the four files, no retries
  for text in ("offline (test)", str(data_dir), "(none given)", "train-images-idx3-ubyte.gz"):
    assert text in str(error.value)
  assert not list(data_dir.iterdir())


def test_not_prepared_with_prepare_off(tmp_path):
  with pytest.raises(datasets.DatasetUnavailableError, match="not prepared"):
    datasets.load("cifar10", str(tmp_path / "data"), prepare=False)
  assert not (tmp_path / "data").exists()


def test_train_examples_reads_only_those_records_and_the_same_arrays(tmp_path, fake_fashion_mnist,
                                                                     monkeypatch):
  data_dir, _ = _prepared_fake(tmp_path, fake_fashion_mnist)
  whole = datasets.load("fashion_mnist", data_dir)
  read = []
  source_class = type(tfds.data_source("fashion_mnist", data_dir=data_dir)["train"])
  getitems = source_class.__getitems__

  def spy(self, keys):
    read.append((self.split, list(keys)))
    return getitems(self, keys)

  monkeypatch.setattr(source_class, "__getitems__", spy)
  monkeypatch.setattr(datasets, "READ_BATCH", 4)
  part = datasets.load("fashion_mnist", data_dir, train_examples=7)
  assert read == [("train", [0, 1, 2, 3]), ("train", [4, 5, 6]),
                  ("test", [0, 1, 2, 3]), ("test", [4, 5, 6, 7]), ("test", [8, 9])]
  assert (part.num_train, whole.num_train) == (7, 30)
  # The first 7, as slicing them from the whole split would give.
  np.testing.assert_array_equal(part.train.images, whole.train.images[:7])
  np.testing.assert_array_equal(part.train.labels, whole.train.labels[:7])
  np.testing.assert_array_equal(part.test.images, whole.test.images)
  np.testing.assert_array_equal(part.test.labels, whole.test.labels)
  more = datasets.load("fashion_mnist", data_dir, train_examples=1000)  # more than there are
  np.testing.assert_array_equal(more.train.images, whole.train.images)


def test_an_official_split_is_labelled_without_re_split(tmp_path, fake_fashion_mnist):
  data_dir, _ = _prepared_fake(tmp_path, fake_fashion_mnist)
  assert datasets.load("fashion_mnist", data_dir, splits=()).label == "Fashion-MNIST"


def test_unexpected_image_shape_is_reported(tmp_path, fake_fashion_mnist, monkeypatch):
  data_dir, _ = _prepared_fake(tmp_path, fake_fashion_mnist)
  info = dataclasses.replace(datasets.DATASETS["fashion_mnist"], image_shape=(32, 32, 1))
  monkeypatch.setitem(datasets.DATASETS, "fashion_mnist", info)
  expected = r"'fashion_mnist' split 'train'.*\(32, 32, 1\).*\(28, 28, 1\)"
  with pytest.raises(ValueError, match=expected):
    datasets.load("fashion_mnist", data_dir)


def test_truncated_file_is_reported_with_the_fix(tmp_path, fake_fashion_mnist):
  data_dir, _ = _prepared_fake(tmp_path, fake_fashion_mnist)
  (path,) = [p for p in (tmp_path / "data").rglob("fashion_mnist-train.array_record*")]
  os.truncate(path, path.stat().st_size // 2)
  with pytest.raises(datasets.DatasetUnavailableError) as error:
    datasets.load("fashion_mnist", data_dir)
  assert str(path) in str(error.value) and "delete the dataset folder" in str(error.value)


@pytest.mark.slow
def test_real_fashion_mnist(fashion_mnist_data_dir):
  data = datasets.load("fashion_mnist", fashion_mnist_data_dir, prepare=False)
  info = datasets.DATASETS["fashion_mnist"]
  for split, n in (("train", 60_000), ("test", 10_000)):
    read = getattr(data, split)
    assert read.images.shape == (n, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(read.labels, minlength=10), [n // 10] * 10)
  pixels = data.train.images / 255.0
  assert abs(pixels.mean() - info.mean[0]) < 1e-3 and abs(pixels.std() - info.std[0]) < 1e-3


@pytest.mark.slow
def test_real_cifar100_resplit(cifar100_data_dir):
  data = datasets.load("cifar100", cifar100_data_dir, prepare=False)
  assert data.label == "CIFAR-100 (re-split)" and data.num_train == 50_000
  for split, n in (("train", 50_000), ("test", 10_000)):
    read = getattr(data, split)
    assert read.images.shape == (n, 32, 32, 3) and read.images.dtype == np.uint8
    assert read.labels.min() == 0 and read.labels.max() == 99
    np.testing.assert_array_equal(np.bincount(read.labels, minlength=100), [n // 100] * 100)


def test_names_and_sizes_without_reading_and_none_without_preparing(cifar100_data_dir, tmp_path):
  names_only = datasets.load("cifar100", cifar100_data_dir, splits=(), train_examples=640)
  assert names_only.train is None and names_only.test is None and names_only.num_train == 640
  assert len(names_only.class_names) == 100
  assert names_only.class_names[:2] == ["apple", "aquarium_fish"]
  absent = datasets.load("cifar100", str(tmp_path / "none"), splits=())
  assert (absent.class_names, absent.num_train, absent.label) == (None, None, "CIFAR-100")
  assert not (tmp_path / "none").exists()  # nothing prepared, nothing downloaded
