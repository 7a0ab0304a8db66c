"""TFDS builders of cifar10, cifar100, fashion_mnist and svhn_cropped that need no TensorFlow.

Each subclasses TFDS's stock builder (same name, version, features, splits, example keys and
array_record layout), so `tfds.data_source(name, data_dir=...)` reads what it writes. The stock
ones need TensorFlow to extract and read the archives and to PNG-encode numpy images; these fetch
the archives with `dl_manager.download` (TFDS checks them against the stock builder's registered
checksums and, given `DownloadConfig(manual_dir=...)`, takes a file of the URL's filename from
manual_dir), parse them with the standard library and hand TFDS images as PNG bytes from PIL.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tarfile
import urllib.parse

from etils import epath
import numpy as np
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.svhn_cropped import svhn_cropped_dataset_builder as svhn
from tensorflow_datasets.image_classification import cifar
from tensorflow_datasets.image_classification import mnist

from ltpa_jax.base import errors
from ltpa_jax.base import png

# TFDS reads a builder's checksums (`url_infos`) from `_checksums_path`, by default next to the
# builder's code (a lookup that also needs the `importlib_resources` backport): point each builder
# at the file its stock builder uses.
_TFDS = tfds.core.utils.tfds_path()


# One request, without retries, to see whether a source host answers before downloading from it:
# TFDS's downloader retries a failed connection 10 times with backoff (204 s offline).
PROBE_TIMEOUT_S = 5


class DatasetUnavailableError(errors.UserError, RuntimeError):
  """A dataset is not prepared and its source files cannot be had, or it cannot be read."""


def _tar_members(path, names) -> dict[str, bytes]:
  """The named members of a .tar.gz archive, read in one pass."""
  with epath.Path(path).open("rb") as f, tarfile.open(fileobj=f, mode="r:gz") as tar:
    members = {m.name: tar.extractfile(m).read() for m in tar if m.name in names}
  if missing := sorted(set(names) - set(members)):
    raise ValueError(f"Archive {path} lacks {missing}.")
  return members


def _read_idx(path) -> np.ndarray:
  """The array of a gzipped IDX file of unsigned bytes (the MNIST format)."""
  data = gzip.decompress(epath.Path(path).read_bytes())
  if data[:3] != b"\0\0\x08":
    raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
  shape = np.frombuffer(data, ">u4", count=data[3], offset=4)
  return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(shape)


class Cifar10(cifar.Cifar10, skip_registration=True):
  """cifar10 from cifar-10-binary.tar.gz."""

  name = "cifar10"
  URLS = {"archive": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"}
  _checksums_path = _TFDS / "url_checksums" / "cifar10.txt"

  def _split_generators(self, dl_manager):
    info = self._cifar_info
    files = [*info.train_files, *info.test_files, *info.label_files]
    archive = dl_manager.download(self.URLS)["archive"]
    members = _tar_members(archive, [info.prefix + f for f in files])
    data = {f: members[info.prefix + f] for f in files}
    for key, label_file in zip(info.label_keys, info.label_files):
      self.info.features[key].names = [n for n in data[label_file].decode().split("\n") if n]
    return {
        "train": self._generate_examples("train_", [data[f] for f in info.train_files]),
        "test": self._generate_examples("test_", [data[f] for f in info.test_files]),
    }

  def _generate_examples(self, split_prefix, blobs):
    """Records of label bytes then a 3x32x32 image, keyed by index like the stock builder."""
    label_keys = self._cifar_info.label_keys
    rows = np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, len(label_keys) + 3072)
    for index, row in enumerate(rows):
      record = {key: int(label) for key, label in zip(label_keys, row)}
      record["id"] = f"{split_prefix}{index:05d}"
      record["image"] = png.encode(row[len(label_keys):].reshape(3, 32, 32).transpose(1, 2, 0))
      yield index, record


class Cifar100(Cifar10, cifar.Cifar100, skip_registration=True):
  """cifar100 from cifar-100-binary.tar.gz."""

  name = "cifar100"
  URLS = {"archive": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"}
  _checksums_path = _TFDS / "url_checksums" / "cifar100.txt"


class FashionMNIST(mnist.FashionMNIST, skip_registration=True):
  """fashion_mnist from its four IDX .gz files."""

  name = "fashion_mnist"
  URLS = {
      f"{split}_{kind}": f"{mnist.FashionMNIST.URL}{prefix}-{kind}-idx{ndim}-ubyte.gz"
      for split, prefix in (("train", "train"), ("test", "t10k"))
      for kind, ndim in (("images", 3), ("labels", 1))
  }
  _checksums_path = _TFDS / "url_checksums" / "fashion_mnist.txt"

  def _split_generators(self, dl_manager):
    paths = dl_manager.download(self.URLS)
    return {
        split: self._generate_examples(paths[f"{split}_images"], paths[f"{split}_labels"])
        for split in ("train", "test")
    }

  def _generate_examples(self, images_path, labels_path):
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
      raise ValueError(f"{images_path} {images.shape} and {labels_path} {labels.shape} differ.")
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": png.encode(image[..., None]), "label": int(label)}


class SvhnCropped(svhn.Builder, skip_registration=True):
  """svhn_cropped from its three MATLAB files (read with scipy)."""

  name = "svhn_cropped"
  URLS = {split: f"{svhn.URL}{split}_32x32.mat" for split in ("train", "test", "extra")}
  _checksums_path = _TFDS / "datasets" / "svhn_cropped" / "checksums.tsv"
  pkg_dir_path = svhn.Builder._get_pkg_dir_path()  # the stock README and citation

  def _split_generators(self, dl_manager):
    paths = dl_manager.download(self.URLS)
    return {split: self._generate_examples(f"{split}_", path) for split, path in paths.items()}

  def _generate_examples(self, split_prefix, filepath):
    from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
    with epath.Path(filepath).open("rb") as f:
      data = scipy_io.loadmat(f)
    images, labels = np.moveaxis(data["X"], -1, 0), data["y"].reshape(-1)
    if images.shape[1:] != (32, 32, 3) or len(images) != len(labels):
      raise ValueError(f"{filepath}: images {images.shape} and labels {labels.shape} differ.")
    if labels.min() < 1 or labels.max() > 10:
      raise ValueError(f"{filepath}: labels outside 1..10.")
    for index, (image, label) in enumerate(zip(images, labels)):
      # Digit 0 is stored as label 10.
      yield index, {"image": png.encode(image), "label": int(label) % 10,
                    "id": f"{split_prefix}{index:06d}"}


BUILDERS = {b.name: b for b in (Cifar10, Cifar100, FashionMNIST, SvhnCropped)}


def builder_class(name: str) -> type[tfds.core.GeneratorBasedBuilder]:
  """The TF-free builder of dataset `name`."""
  if name not in BUILDERS:
    raise ValueError(f"No TF-free builder for dataset {name!r}; supported: {sorted(BUILDERS)}.")
  return BUILDERS[name]


def is_prepared(name: str, data_dir: str | None) -> bool:
  """Whether dataset `name` is prepared in TFDS `data_dir` (reading it otherwise prepares it)."""
  return _is_prepared(builder_class(name)(data_dir=data_dir))


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()` without its warning that the version folder has no
  dataset_info.json, which it gives for a folder that does not exist too: the caller says
  what is missing."""
  return os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json"))


def source_files(name: str) -> dict[str, str]:
  """{filename: URL} of the source files of `name`: what a manual_dir must hold."""
  cls = builder_class(name)
  return {cls.url_infos[url].filename: url for url in cls.URLS.values()}


def prepare(
    name: str, data_dir: str | None, manual_dir: str | None = None, download: bool = True
) -> None:
  """Prepares dataset `name` in TFDS `data_dir` as array_record files, without TensorFlow.

  Source files come from `manual_dir` when there, else are downloaded (unless `download` is
  False; an unreachable source host fails at once); TFDS checks them against the registered
  checksums either way. No-op when prepared.
  """
  builder = builder_class(name)(data_dir=data_dir)
  if _is_prepared(builder):
    return
  files = source_files(name)
  missing = [f for f in files if not (manual_dir and os.path.exists(os.path.join(manual_dir, f)))]
  if missing and not download:
    raise DatasetUnavailableError(_unavailable(name, data_dir, manual_dir, missing, files))
  if missing and (error := _unreachable([files[f] for f in missing])):
    raise DatasetUnavailableError(_unavailable(name, data_dir, manual_dir, missing, files, error))
  config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  dirs_before = _dirs(builder.data_dir_root)
  try:
    builder.download_and_prepare(file_format="array_record", download_config=config)
  except (OSError, tfds.download.DownloadError) as e:
    if not missing:
      raise
    # Take back the empty folders the failed attempt made; deepest first.
    for path in sorted(_dirs(builder.data_dir_root) - dirs_before, reverse=True):
      with contextlib.suppress(OSError):
        os.rmdir(path)
    message = _unavailable(name, data_dir, manual_dir, missing, files, e)
    raise DatasetUnavailableError(message) from e


def _unreachable(urls) -> str | None:
  """Why the hosts of `urls` cannot be downloaded from now (one HEAD request each, no retries),
  or None when each answers (any HTTP status)."""
  for url in {urllib.parse.urlsplit(u).netloc: u for u in urls}.values():
    try:
      requests.head(url, timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as e:
      return f"{url} is unreachable: {e}"
  return None


def _dirs(root) -> set[str]:
  return {path for path, _, _ in os.walk(root)}


def _unavailable(name, data_dir, manual_dir, missing, files, error=None) -> str:
  why = f"downloading its source files failed ({error})" if error else "downloading is off"
  return (
      f"Dataset {name!r} is not prepared in data_dir {data_dir or '~/tensorflow_datasets'} and "
      f"{why}. Set config.data_dir to the folder that holds it prepared, or put these files, "
      "byte-identical to the official ones (their checksums are checked), in a folder and set "
      f"config.manual_dir to it (now {manual_dir or '(none given)'}): "
      + "; ".join(f"{f} (from {files[f]})" for f in missing)
  )
