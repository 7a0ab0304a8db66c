"""Shared fixtures: the real datasets (skipped when absent), a run that learned Fashion-MNIST, a
small fake Fashion-MNIST, x64, and one XLA compilation cache for the whole session. Under
pytest-xdist each worker process is a session of its own: it makes its own of each.

The tests run on the CPU, whatever accelerator the machine has (their numbers, printed lines and
warnings are the CPU's): JAX_PLATFORMS is pinned to cpu, unless it names platforms, before JAX
starts a backend, for this process and the processes the tests start.

Test tiers: a test marked `slow` (training runs, several processes, installs) runs only in the
whole suite (`pytest`); every other test is marked `fast` here, for `pytest -m fast`.
"""

import gzip
import os
import pathlib

import jax
import numpy as np
import pytest
from tensorflow_datasets.core.download import checksums

from ltpa_jax.data import tfds_builders

os.environ["JAX_PLATFORMS"] = os.environ.get("JAX_PLATFORMS") or "cpu"
jax.config.update("jax_platforms", os.environ["JAX_PLATFORMS"])

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
# Persistent compilation cache options, as environment variables (read by every subprocess's JAX).
CACHE_OPTIONS = {"jax_compilation_cache_dir": None,
                 "jax_persistent_cache_min_compile_time_secs": 0}


def pytest_collection_modifyitems(items):
  for item in items:
    if item.get_closest_marker("slow") is None:
      item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA compilation cache shared by the tests and the processes they start.

  Many tests compile the same tiny programs, in this process and in the train.py processes they
  start (runs, then their resumed runs); a cache hit returns the very program compiled before, so
  the numbers are those of a fresh compile.
  """
  options = dict(CACHE_OPTIONS, jax_compilation_cache_dir=str(tmp_path_factory.mktemp("xla")))
  before = {name: getattr(jax.config, name) for name in options}
  with pytest.MonkeyPatch.context() as patch:
    for name, value in options.items():
      patch.setenv(name.upper(), str(value))
      jax.config.update(name, value)
    yield
  for name, value in before.items():
    jax.config.update(name, value)


@pytest.fixture
def x64():
  """64-bit JAX for one test: float64 proofs that two computations are the same maths."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def fashion_mnist_data_dir(tmp_path_factory):
  """A TFDS data_dir with the real Fashion-MNIST, prepared once per session from ../shared."""
  manual_dir = SHARED / "data" / "fashion_mnist"
  if not manual_dir.is_dir():
    pytest.skip(f"real Fashion-MNIST archives absent ({manual_dir})")
  data_dir = tmp_path_factory.mktemp("fashion_mnist_tfds")
  tfds_builders.prepare("fashion_mnist", str(data_dir), manual_dir=str(manual_dir), download=False)
  return str(data_dir)


@pytest.fixture(scope="session")
def learned_fashion_mnist_run(fashion_mnist_data_dir, tmp_path_factory):
  """(workdir, results) of a tiny attention model trained once per session on real Fashion-MNIST
  (tests/test_fashion_mnist_training.py's `learning_config`, ~1 minute on CPU): a model that has
  learned. Its workdir is shared: copy it before writing there."""
  from ltpa_jax.training import loop as train  # pylint: disable=import-outside-toplevel
  from tests import test_fashion_mnist_training  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path_factory.mktemp("learned_fashion_mnist"))
  config = test_fashion_mnist_training.learning_config(fashion_mnist_data_dir)
  return workdir, train.train_and_evaluate(config, workdir)


@pytest.fixture(scope="session")
def cifar100_data_dir():
  """The TFDS data_dir in ../shared holding CIFAR-100 (re-split); read only."""
  data_dir = SHARED / "tensorflow_datasets"
  if not (data_dir / "cifar100").is_dir():
    pytest.skip(f"CIFAR-100 (re-split) absent ({data_dir / 'cifar100'})")
  return str(data_dir)


@pytest.fixture
def register_fake_checksums(monkeypatch):
  """`register(name, manual_dir)`: for this test only, TFDS expects the checksums of the files in
  manual_dir (fakes named like the official source files of `name`) instead of the official ones."""

  def register(name, manual_dir):
    infos = {
        url: checksums.compute_url_info(manual_dir / filename)
        for filename, url in tfds_builders.source_files(name).items()
    }
    monkeypatch.setattr(tfds_builders.builder_class(name), "url_infos", infos)

  return register


def _write_idx(path, array):
  """Writes a gzipped IDX file of unsigned bytes."""
  header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion_mnist(tmp_path, register_fake_checksums):
  """A manual_dir with small fake Fashion-MNIST archives (checksums registered) and their arrays."""
  rng = np.random.default_rng(0)
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  splits = {}
  for split, prefix, n in (("train", "train", 30), ("test", "t10k", 10)):
    images, labels = rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n, np.uint8)
    _write_idx(manual_dir / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(manual_dir / f"{prefix}-labels-idx1-ubyte.gz", labels)
    splits[split] = (images[..., None], labels)
  register_fake_checksums("fashion_mnist", manual_dir)
  return manual_dir, splits


@pytest.fixture
def prepared_fake_data(fake_fashion_mnist, tmp_path):
  """A data_dir with a 30/10-image fake Fashion-MNIST, readable by another process."""
  manual_dir, _ = fake_fashion_mnist
  data_dir = tmp_path / "tfds"
  tfds_builders.prepare("fashion_mnist", str(data_dir), manual_dir=str(manual_dir), download=False)
  return str(data_dir)


@pytest.fixture
def fake_dataset(monkeypatch):
  """A tiny config whose dataset "fake" is 96 in-memory training images and 50 test images."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from ltpa_jax.data import datasets  # pylint: disable=import-outside-toplevel
  from tests import fakes  # pylint: disable=import-outside-toplevel

  fake = fakes.dataset(fakes.colour_split(96, 0), fakes.colour_split(50, 3))
  monkeypatch.setitem(datasets.DATASETS, "fake", fakes.INFO)
  monkeypatch.setattr(datasets, "load", lambda *args, **kwargs: fake)
  config = tiny.get_config()
  config.dataset = "fake"
  config.attention_images = 4
  return config
