"""The table command: each config's seeds trained together, then one table beside the reference."""

import os

import jax
import pytest

from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.analysis import studies
from ltpa_jax.training import loop as train
from tests import fakes

ENSURE_PREPARED = datasets.ensure_prepared

TINY = {"model.width_multiplier": 1 / 16, "dataset": "cifar10", "batch_size": 8,
        "eval_batch_size": 8, "num_epochs": 1, "lr_boundaries_epochs": (), "attention_images": 2,
        "steps_per_call": 1}


@pytest.fixture
def configs(monkeypatch):
  """The table's two configs, tiny, on 16 random training and 8 test images shaped as cifar10."""
  fake = fakes.dataset(fakes.noise_split(16, 0), fakes.noise_split(8, 1),
                       datasets.DATASETS["cifar10"], "cifar10")
  monkeypatch.setattr(datasets, "load", lambda *args, **kwargs: fake)
  monkeypatch.setattr(datasets, "ensure_prepared", lambda *args: None)
  with jax.threefry_partitionable(False):  # only to compile faster on XLA:CPU
    yield studies.named_configs(studies.CONFIGS, TINY)


@pytest.mark.slow
def test_trains_every_seed_of_each_config_then_reads_the_finished_table(configs, tmp_path,
                                                                         monkeypatch):
  markdown = studies.train_table(configs, str(tmp_path), seeds=[0, 1])
  assert sorted(os.listdir(tmp_path)) == ["table.md", "vgg19", "vgg19_att"]
  for name in configs:
    assert sorted(os.listdir(tmp_path / name)) == ["seed_0", "seed_1"]
  assert (tmp_path / "table.md").read_text() == markdown + "\n"
  for model in ("VGG19", "VGG19-att (sigmoid, shared u)"):  # the reference table's recipes
    assert (f"| {model} | b2 3 convs, wd 1e-4, 1 epoch | - | 2 | 0, 1 |" in markdown), markdown
  assert "## PyTorch reference" in markdown
  # Finished: the same table, read back without training.
  monkeypatch.setattr(train.start_lib, "build", None)
  assert studies.train_table(configs, str(tmp_path), seeds=[0, 1]) == markdown


def test_a_stop_ends_the_table_before_the_next_config(configs, tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(train, "train_and_evaluate",
                      lambda config, workdir, **kwargs: trained.append(workdir))  # None: stopped
  assert studies.train_table(configs, str(tmp_path), seeds=[0]) is None
  assert trained == [str(tmp_path / "vgg19")]


def test_every_config_is_checked_before_any_training(configs, tmp_path):
  configs["vgg19_att"].model.normalisation = "softmaxx"
  with pytest.raises(errors.UserError, match="normalisation"):
    studies.train_table(configs, str(tmp_path), seeds=[0])
  assert not os.listdir(tmp_path)


def test_every_config_s_data_is_checked_before_any_training(configs, prepared_fake_data,
                                                            tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "ensure_prepared", ENSURE_PREPARED)
  for config, data_dir in zip(configs.values(), (prepared_fake_data, str(tmp_path / "nowhere"))):
    config.update(dataset="fashion_mnist", data_dir=data_dir)
  with pytest.raises(datasets.DatasetUnavailableError, match=r"data_dir \S+nowhere does not exist"):
    studies.train_table(configs, str(tmp_path / "table"), seeds=[0])
  assert not (tmp_path / "table").exists()


def test_config_files_need_distinct_names():
  with pytest.raises(errors.UserError, match="names must differ"):
    studies.named_configs(["configs/vgg19.py", "./configs/vgg19.py"], {})
  with pytest.raises(FileNotFoundError, match="no config file configs/vgg16.py"):
    studies.named_configs(["configs/vgg16.py"], {})
