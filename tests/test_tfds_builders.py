"""TF-free TFDS builders: fake archives in the official formats, real Fashion-MNIST, checksums."""

import io
import sys
import tarfile

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from ltpa_jax.data import datasets
from ltpa_jax.data import tfds_builders


@pytest.fixture
def manual_dir(tmp_path):
  path = tmp_path / "manual"
  path.mkdir()
  return path


def _prepare(name, tmp_path, manual_dir):
  """Prepares `name` from manual_dir only into a fresh data_dir, which it returns."""
  data_dir = str(tmp_path / "data")
  tfds_builders.prepare(name, data_dir, manual_dir=str(manual_dir), download=False)
  return data_dir


def _records(data_dir, name, split):
  """Every record of a prepared split, read back through `tfds.data_source`."""
  source = tfds.data_source(name, data_dir=data_dir)[split]
  return source.__getitems__(list(range(len(source))))


def _assert_by_id(records, images, labels):
  """Each record equals the written example its id ("train_00012") indexes."""
  assert len(records) == len(images)
  for record in records:
    index = int(record["id"].decode().split("_")[1])
    np.testing.assert_array_equal(record["image"], images[index])
    for key, values in labels.items():
      assert record[key] == values[index]


def _write_tar_gz(path, members):
  with tarfile.open(path, "w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def _fake_cifar(rng, n, label_counts):
  """Images, labels (one array per label kind) and their CIFAR binary records."""
  images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
  labels = np.stack([rng.integers(0, c, n, np.uint8) for c in label_counts], 1)
  records = np.concatenate([labels, images.transpose(0, 3, 1, 2).reshape(n, -1)], 1)
  return images, list(labels.T), records.tobytes()


def test_builders_keep_stock_name_version_and_checksums():
  for name, cls in tfds_builders.BUILDERS.items():
    stock = tfds.builder_cls(name)
    assert cls.name == name and cls.VERSION == stock.VERSION and issubclass(cls, stock)
    assert stock is not cls  # the stock registration is untouched
    for filename, url in tfds_builders.source_files(name).items():
      assert url.endswith("/" + filename) and cls.url_infos[url].size > 0


def test_prepare_cifar10_from_fake_archive(tmp_path, manual_dir, register_fake_checksums):
  rng = np.random.default_rng(0)
  batches = [_fake_cifar(rng, 2, [10]) for _ in range(5)]
  test_images, (test_labels,), test_bin = _fake_cifar(rng, 4, [10])
  names = [f"class{i}" for i in range(10)]
  members = {f"data_batch_{i + 1}.bin": batch[2] for i, batch in enumerate(batches)}
  members["test_batch.bin"] = test_bin
  members["batches.meta.txt"] = "\n".join(names + ["", ""]).encode()  # trailing blank lines
  archive = {"cifar-10-batches-bin/" + k: v for k, v in members.items()}
  _write_tar_gz(manual_dir / "cifar-10-binary.tar.gz", archive)
  register_fake_checksums("cifar10", manual_dir)

  data_dir = _prepare("cifar10", tmp_path, manual_dir)

  train_images = np.concatenate([b[0] for b in batches])
  train_labels = np.concatenate([b[1][0] for b in batches])
  _assert_by_id(_records(data_dir, "cifar10", "train"), train_images, {"label": train_labels})
  _assert_by_id(_records(data_dir, "cifar10", "test"), test_images, {"label": test_labels})
  assert tfds.builder("cifar10", data_dir=data_dir).info.features["label"].names == names
  assert "tensorflow" not in sys.modules


def test_prepare_cifar100_from_fake_archive(tmp_path, manual_dir, register_fake_checksums):
  rng = np.random.default_rng(1)
  splits = {"train": _fake_cifar(rng, 12, [20, 100]), "test": _fake_cifar(rng, 5, [20, 100])}
  coarse_names, fine_names = [f"super{i}" for i in range(20)], [f"class{i}" for i in range(100)]
  members = {f"{split}.bin": bin_ for split, (_, _, bin_) in splits.items()}
  members["coarse_label_names.txt"] = "\n".join(coarse_names).encode()
  members["fine_label_names.txt"] = "\n".join(fine_names).encode()
  archive = {"cifar-100-binary/" + k: v for k, v in members.items()}
  _write_tar_gz(manual_dir / "cifar-100-binary.tar.gz", archive)
  register_fake_checksums("cifar100", manual_dir)

  data_dir = _prepare("cifar100", tmp_path, manual_dir)

  for split, (images, (coarse, fine), _) in splits.items():
    labels = {"label": fine, "coarse_label": coarse}
    _assert_by_id(_records(data_dir, "cifar100", split), images, labels)
  features = tfds.builder("cifar100", data_dir=data_dir).info.features
  assert features["label"].names == fine_names
  assert features["coarse_label"].names == coarse_names
  assert "tensorflow" not in sys.modules


def test_prepare_fashion_mnist_from_fake_archives(tmp_path, fake_fashion_mnist):
  manual_dir, splits = fake_fashion_mnist
  data_dir = _prepare("fashion_mnist", tmp_path, manual_dir)
  for split, (images, labels) in splits.items():
    records = _records(data_dir, "fashion_mnist", split)
    assert records[0]["image"].shape == (28, 28, 1)
    # No ids: compare the (label, pixels) multisets.
    got = sorted((int(r["label"]), r["image"].tobytes()) for r in records)
    assert got == sorted((int(l), im.tobytes()) for l, im in zip(labels, images))
  assert "tensorflow" not in sys.modules


def test_prepare_svhn_cropped_from_fake_mat_files(tmp_path, manual_dir, register_fake_checksums):
  scipy_io = pytest.importorskip("scipy.io", reason="svhn_cropped's MATLAB files need scipy")
  rng = np.random.default_rng(2)
  splits = {}
  for split, n in (("train", 7), ("test", 3), ("extra", 2)):
    images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
    labels = rng.integers(1, 11, n, np.uint8)
    labels[0] = 10  # digit 0 is stored as 10
    mat = {"X": np.moveaxis(images, 0, -1), "y": labels[:, None]}
    scipy_io.savemat(manual_dir / f"{split}_32x32.mat", mat)
    splits[split] = images, labels % 10
  register_fake_checksums("svhn_cropped", manual_dir)

  data_dir = _prepare("svhn_cropped", tmp_path, manual_dir)

  for split, (images, labels) in splits.items():
    _assert_by_id(_records(data_dir, "svhn_cropped", split), images, {"label": labels})
  assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("name", sorted(tfds_builders.BUILDERS))
def test_wrong_checksum_is_rejected(tmp_path, manual_dir, name):
  for filename in tfds_builders.source_files(name):  # the official names, not the official bytes
    (manual_dir / filename).write_bytes(b"not the official file")
  with pytest.raises(NonMatchingChecksumError):
    _prepare(name, tmp_path, manual_dir)


def test_missing_files_with_download_off_names_them(tmp_path, manual_dir):
  with pytest.raises(tfds_builders.DatasetUnavailableError) as error:
    _prepare("fashion_mnist", tmp_path, manual_dir)
  files = tfds_builders.source_files("fashion_mnist")
  for text in (str(tmp_path / "data"), str(manual_dir), *files):
    assert text in str(error.value)
  assert not (tmp_path / "data").exists()


def test_failed_download_names_the_files(tmp_path, manual_dir, monkeypatch):
  def offline(url, **kwargs):
    raise requests.exceptions.ConnectionError(f"offline (test): {url}")

  monkeypatch.setattr(requests, "head", lambda url, **kwargs: None)  # the host answers, but
  monkeypatch.setattr(downloader, "_open_url", offline)  # the download fails; nothing goes online
  data_dir = tmp_path / "data"
  with pytest.raises(tfds_builders.DatasetUnavailableError) as error:
    tfds_builders.prepare("cifar10", str(data_dir), manual_dir=str(manual_dir))
  for text in ("offline (test)", "cifar-10-binary.tar.gz", str(manual_dir), str(data_dir)):
    assert text in str(error.value)
  assert not data_dir.exists()  # the failed attempt leaves no empty folders behind


def test_unknown_builder_lists_the_supported_ones():
  with pytest.raises(ValueError, match="cifar10.*fashion_mnist.*svhn_cropped"):
    tfds_builders.prepare("mnist", "unused")


@pytest.mark.slow
def test_real_fashion_mnist_end_to_end(fashion_mnist_data_dir):
  sources = tfds.data_source("fashion_mnist", data_dir=fashion_mnist_data_dir)
  for split, n in (("train", 60_000), ("test", 10_000)):
    data = datasets.read_split(sources[split])
    assert data.images.shape == (n, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(data.labels, minlength=10), [n // 10] * 10)
    if split == "train":
      assert abs(data.images.mean() / 255 - 0.2860) < 1e-3
  assert "tensorflow" not in sys.modules
