"""Seeds trained together (vmapped) give each seed's single run."""

import functools
import json
import os

import jax
import numpy as np
import pytest

from configs import tiny
from ltpa_jax import datasets
from ltpa_jax import errors
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import replicas
from ltpa_jax import train
from tests import exact


def fake_split(n, seed):
  rng = np.random.default_rng(seed)
  return datasets.Split(rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                        rng.integers(0, 10, n).astype(np.int32))


@pytest.fixture
def config(monkeypatch):
  splits = {"train": fake_split(16, 0), "test": fake_split(12, 1)}
  monkeypatch.setattr(datasets, "load", lambda *args, **kwargs: splits)
  monkeypatch.setattr(datasets, "label", lambda *args: "fake")
  config = tiny.get_config()
  config.dataset = "cifar10"
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 2  # the learning rate drops after epoch 1
  # Non-partitionable threefry only to compile 3x faster on XLA:CPU; both modes derive the same
  # keys, and vmapped random bits equal unbatched ones in both.
  with jax.threefry_partitionable(False):
    yield config, splits


def single_run(config, splits, seed):
  """Seed `seed` alone, keys derived as train.train_and_evaluate derives them."""
  info = datasets.dataset_info(config.dataset)
  train_data, test_data = train.to_device(splits["train"]), train.to_device(splits["test"])
  model = models.create_model(config.model, info.num_classes)
  tx = optim.sgd(optim.learning_rate_schedule(config, 2), config.momentum, config.weight_decay)
  init_rng, train_rng = jax.random.split(jax.random.key(seed))
  state = jax.jit(functools.partial(train.initial_state, model, tx, image_shape=(32, 32, 3)))(
      init_rng)
  shapes = train.chunk_shapes(16, 8, config.steps_per_call)
  compiled = train.compile_train_steps(model, tx, info, state, train_data, train_rng, shapes)
  for epoch in range(config.num_epochs):
    state, metrics, _ = train.train_pass(
        compiled, 8, config.steps_per_call, state, train.empty_metrics(train.TrainMetrics,
                                                                       state.params),
        train_data, jax.random.fold_in(train_rng, epoch))
  test = jax.jit(functools.partial(train.evaluate, model, info, 8))(state, test_data)
  return state, metrics.compute(), test.compute()


def test_each_replica_is_its_single_run(config, tmp_path, x64):
  """Vmapped (grouped) convs and single ones: other programs, the same maths, proven in float64
  at the recipe's learning rate (0.1), where this tiny run is chaotic: float32 rounding grew to
  1e-2 within its 4 steps."""
  config, splits = config
  config.model.dtype = "float64"
  states, runs = replicas.train_replicas(config, [3, 7], str(tmp_path))
  state, metrics, test = single_run(config, splits, 7)

  replica = jax.tree.map(lambda x: x[1], states)
  assert int(replica.step) == int(state.step) == 4
  exact.assert_trees_close(replica, state, atol=exact.noise_floor(state))
  with open(tmp_path / "seed_7" / "history.json") as f:
    _, epoch = json.load(f)
  exact.assert_trees_close(
      [epoch["train_loss"], epoch["train_error"], epoch["test_loss"], epoch["test_top1_error"]],
      [metrics["loss"], 100 * (1 - metrics["accuracy"]), test["loss"],
       100 * (1 - test["accuracy"])])
  assert runs[1]["seed"] == 7 and runs[1]["final"]["test_loss"] == epoch["test_loss"]
  assert json.load(open(tmp_path / "seed_3" / "config.json"))["seed"] == 3
  # Different seeds: different runs.
  assert not np.allclose(states.params["classifier"]["kernel"][0],
                         states.params["classifier"]["kernel"][1])


def test_refuses_bad_seeds_and_finished_runs(config, tmp_path):
  config, _ = config
  for seeds in ([], [1, 1], [-1]):
    with pytest.raises(errors.UserError, match="seeds must be distinct"):
      replicas.train_replicas(config, seeds, str(tmp_path))
  os.makedirs(tmp_path / "seed_2")
  with open(tmp_path / "seed_2" / "history.json", "w") as f:
    f.write("[]")
  with pytest.raises(Exception, match="seed_2"):
    replicas.train_replicas(config, [2], str(tmp_path))
