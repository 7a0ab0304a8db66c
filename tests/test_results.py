"""results: results.json of a finished run, final and best-on-test errors, never overwritten."""

import jax
import pytest

from configs import default
from ltpa_jax.rundir import results


def _history():
  """Three epochs, the second not evaluated; the best on test is the first."""
  return [
      dict(epoch=1, train_loss=3.0, train_error=80.0, test_loss=2.0, test_top1_error=30.0,
           test_top5_error=9.0),
      dict(epoch=2, train_loss=2.5, train_error=70.0),
      dict(epoch=3, train_loss=2.0, train_error=60.0, test_loss=2.1, test_top1_error=31.5,
           test_top5_error=8.5),
  ]


def test_make_write_read(tmp_path):
  config = default.get_config()
  config.seed = 4
  made = results.make(config, _history(), wall_seconds=12.5, images_per_second=1000.0,
                      dataset_label="CIFAR-100 (re-split)")
  assert made["final"] == dict(epoch=3, test_top1_error=31.5, test_top5_error=8.5, test_loss=2.1)
  assert made["best_on_test"]["epoch"] == 1 and made["best_on_test"]["test_top1_error"] == 30.0
  assert "ON THE TEST SET" in made["best_on_test"]["note"]
  # The reference's way: the best top-1 (epoch 1) and the best top-5 (epoch 3), each on its own.
  assert {k: v for k, v in made["best_each_on_test"].items() if k != "note"} == dict(
      test_top1_error=30.0, test_top1_epoch=1, test_top5_error=8.5, test_top5_epoch=3)
  assert made["best_on_test"]["test_top5_error"] == 9.0  # top-5 at the best top-1's epoch
  assert made["seed"] == 4 and made["dataset"] == "cifar100"
  assert made["dataset_label"] == "CIFAR-100 (re-split)"
  assert made["device_kind"] == jax.devices()[0].device_kind
  assert made["versions"]["jax"] == jax.__version__
  path = results.write(str(tmp_path), made)
  assert results.read(str(tmp_path)) == made == results.read(path)
  with pytest.raises(FileExistsError, match="already finished"):
    results.write(str(tmp_path), made)


def test_read_gives_the_config_in_current_terms(tmp_path):
  """A run recorded before grid attention reads as linear (workdir.upgraded)."""
  made = results.make(default.get_config(), _history(), wall_seconds=1, images_per_second=1)
  del made["config"]["model"]["attention_type"]
  results.write(str(tmp_path), made)
  assert results.read(str(tmp_path))["config"]["model"]["attention_type"] == "linear"


def test_dataset_label_defaults_to_the_tfds_name():
  made = results.make(default.get_config(), _history(), wall_seconds=1, images_per_second=1)
  assert made["dataset_label"] == "cifar100"


def test_the_last_epoch_must_be_evaluated():
  with pytest.raises(ValueError, match="evaluate the final epoch"):
    results.make(default.get_config(), _history()[:2], wall_seconds=1, images_per_second=1)


def test_read_names_an_unfinished_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="unfinished"):
    results.read(str(tmp_path))
