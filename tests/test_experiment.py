"""The one build: every command validates through it before reading data; models own their
choices and refuse an unknown one where it is used."""

import jax
import jax.numpy as jnp
import pytest

from configs import tiny
from ltpa_jax.analysis import speed
from ltpa_jax.config import validation as config_validation
from ltpa_jax.data import datasets
from ltpa_jax.analysis import torch_eval
from ltpa_jax.training import experiment
from ltpa_jax.model import models
from ltpa_jax.analysis import fgsm
from ltpa_jax.training import loop as train
from ltpa_jax.analysis import attention
from ltpa_jax.rundir import workdir


def bad_config():
  config = tiny.get_config()
  config.model.normalisation = "softmaxx"
  return config


@pytest.mark.parametrize("command", ["train", "replicas", "benchmark", "evaluate_torch",
                                     "visualize", "robustness"])
def test_every_command_refuses_a_bad_config_before_reading_data(command, tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "load", lambda *a, **k: pytest.fail("read data"))
  run = tmp_path / "run"
  reads_a_run = command in ("visualize", "robustness")
  if reads_a_run:  # a run whose recorded config went bad
    workdir.write_json(str(run / workdir.CONFIG_FILE), workdir.config_dict(bad_config()))
  calls = {
      "train": lambda: train.train_and_evaluate(bad_config(), str(run)),
      "replicas": lambda: train.train_and_evaluate(bad_config(), str(run), seeds=[0, 1]),
      "benchmark": lambda: speed.run(bad_config(), steps=1),
      "evaluate_torch": lambda: torch_eval.evaluate_checkpoint(bad_config(), "model.pth"),
      "visualize": lambda: attention.render(str(run), str(tmp_path / "a.png"), [0]),
      "robustness": lambda: fgsm.measure([str(run)], [0.0], str(tmp_path / "a.png")),
  }
  with pytest.raises(config_validation.ConfigError, match="config.model.normalisation"):
    calls[command]()
  assert reads_a_run or not run.exists()  # no workdir claimed


def test_build_takes_the_model_schedule_and_sizes_from_the_config_and_dataset():
  config = tiny.get_config()
  config.train_examples, config.batch_size, config.passes_per_epoch = 100, 32, 2
  fake = datasets.Dataset("cifar10", datasets.DATASETS["cifar10"], "CIFAR-10", None, 100)
  built = experiment.build(config, make_dataset=lambda c: fake)
  assert built.plan.steps_per_pass == 4  # 3 full batches and the remainder
  assert built.model.num_classes == 10 and built.model.width_multiplier == 1 / 16
  assert float(built.schedule()(7)) == pytest.approx(0.1)  # boundary: epoch 1 = 2 passes = 8 steps
  assert float(built.schedule()(8)) == pytest.approx(0.01)
  checkpoint = built.abstract_checkpoint()
  assert checkpoint["state"].params["classifier"]["kernel"].shape == (3 * 32, 10)


@pytest.mark.parametrize("field, value", [
    ("normalisation", "softmaxx"), ("compatibility", "pcc"), ("aggregation", "sum"),
    ("attention_position", "inside"), ("attended_layers", (1, 4)), ("init_scheme", "he"),
    ("attention_type", "additive")])
def test_a_model_refuses_an_unknown_choice_where_it_uses_it(field, value):
  model = models.VGGAttention(num_classes=10, width_multiplier=1 / 16, **{field: value})
  with pytest.raises(ValueError, match=f"{field} must be one of .*; got {value!r}"
                     if field != "attended_layers" else "attended_layers must be one of 1, 2, 3"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_the_config_schema_takes_its_choices_from_the_modules_that_use_them():
  assert config_validation.CHOICES["model.normalisation"] is models.NORMALISATIONS
  assert set(config_validation.CHOICES["model.init_scheme"]) == {"kaiming", "xavier"}
  assert set(config_validation.CHOICES["lr_schedule"]) == {"piecewise", "step"}
