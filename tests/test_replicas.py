"""Seeds trained together (vmapped or looped) give each seed's single run, and resume as it does."""

import json
import os

import jax
import numpy as np
import pytest

from configs import tiny
from ltpa_jax.rundir import checkpoints
from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.training import experiment
from ltpa_jax.base import stopping
from ltpa_jax.training import loop as train
from ltpa_jax.rundir import workdir as workdir_lib
from tests import exact
from tests import fakes

# Not compared: timings, and which start of a run trained an epoch.
TIMING = ("images_per_second", "epoch_seconds", "wall_seconds", "start")


@pytest.fixture
def config(monkeypatch):
  """Two epochs of 2 steps (16 random images, batch 8) and 12 test images, as "cifar10"."""
  fake = fakes.dataset(fakes.noise_split(16, 0), fakes.noise_split(12, 1),
                       datasets.DATASETS["cifar10"], "cifar10")
  monkeypatch.setattr(datasets, "load", lambda *args, **kwargs: fake)
  config = tiny.get_config()
  config.dataset = "cifar10"
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 2  # the learning rate drops after epoch 1
  config.attention_images = 2
  # Non-partitionable threefry only to compile 3x faster on XLA:CPU; both modes derive the same
  # keys, and vmapped random bits equal unbatched ones in both.
  with jax.threefry_partitionable(False):
    yield config


def final_state(config, workdir):
  """The state in the last checkpoint of the run in `workdir`."""
  target = experiment.build(config).abstract_checkpoint()
  with checkpoints.CheckpointManager(workdir) as ckpt:
    saved, _, step = ckpt.restore(None, target, jax.random.key(0))
  return step, saved["state"]


def history(workdir):
  with open(os.path.join(workdir, "history.json")) as f:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in json.load(f)]


@pytest.mark.slow
def test_replicas_stopped_and_resumed_are_each_seeds_single_run(config, tmp_path, monkeypatch,
                                                               x64, capsys):
  """Seeds 3 and 7 stopped after their first call (step 1 of 4), vmapped, then resumed with
  their steps one after another (seed layout "loop", the default on CPU, as the first line
  says); seed 7 also alone.

  Vmapped (grouped) convs, looped and single ones: other programs, the same maths, proven in
  float64 at the recipe's learning rate (0.1), where this tiny run is chaotic: float32 rounding
  grew to 1e-2 within its 4 steps.
  """
  config.model.dtype = "float64"
  workdir = tmp_path / "replicas"
  calls, wait = [], stopping.wait

  class StopAfterTheFirstCall(stopping.StopSignals):
    requested = property(lambda self: "SIGTERM" if calls else None, lambda self, value: None)

  with monkeypatch.context() as patch:
    patch.setattr(stopping, "StopSignals", StopAfterTheFirstCall)
    patch.setattr(stopping, "wait", lambda tree: calls.append(tree) or wait(tree))
    assert train.train_and_evaluate(config, str(workdir), seeds=[3, 7],
                                    seed_layout="vmap") is None
  for seed in (3, 7):
    assert os.listdir(workdir / f"seed_{seed}" / "checkpoints") == ["1"]
  assert "2 runs trained together, their steps vmapped: seed_3, seed_7." in capsys.readouterr().out
  runs = train.train_and_evaluate(config, str(workdir), seeds=[3, 7])  # on CPU: looped
  assert ("2 runs trained together, their steps looped (the default on cpu; --seed_layout=vmap "
          "batches them): seed_3, seed_7.") in capsys.readouterr().out
  single = config.copy_and_resolve_references()
  single.seed = 7
  alone = train.train_and_evaluate(single, str(tmp_path / "alone"))

  (step, replica), (step_alone, state) = (final_state(single, workdir / "seed_7"),
                                          final_state(single, tmp_path / "alone"))
  assert step == step_alone == 4
  exact.assert_trees_close(replica, state, atol=exact.noise_floor(state))
  exact.assert_trees_close(history(workdir / "seed_7"), history(tmp_path / "alone"))
  exact.assert_trees_close(runs[1]["final"], alone["final"])
  assert runs[1]["seed"] == 7 and "seeds [3, 7]" in runs[1]["replicas"]
  assert json.load(open(workdir / "seed_3" / "config.json"))["seed"] == 3
  assert {"tensorboard", "learning_curves.png", "attention_test.png", "results.json"} <= set(
      os.listdir(workdir / "seed_7"))
  # Different seeds: different runs.
  _, other = final_state(config, workdir / "seed_3")
  assert not np.allclose(other.params["classifier"]["kernel"],
                         replica.params["classifier"]["kernel"])
  # Finished: read back, not retrained.
  assert train.train_and_evaluate(config, str(workdir), seeds=[3, 7]) == runs


def test_refuses_bad_seeds_and_half_finished_replicas(config, tmp_path):
  for seeds in ([], [1, 1], [-1]):
    with pytest.raises(errors.UserError, match="seeds must be distinct"):
      train.train_and_evaluate(config, str(tmp_path), seeds=seeds)
  finished = config.copy_and_resolve_references()
  finished.seed = 2
  workdir_lib.check_same_config(str(tmp_path / "runs" / "seed_2"), finished)
  (tmp_path / "runs" / "seed_2" / "results.json").write_text("{}")
  with pytest.raises(errors.UserError, match="Some runs in .* finished") as refused:
    train.train_and_evaluate(config, str(tmp_path / "runs"), seeds=[2, 5])
  unfinished = tmp_path / "runs" / "seed_5"
  assert str(refused.value).endswith(
      f"resume each unfinished one alone (python -m ltpa_jax --config {unfinished}/config.json "
      f"--workdir {unfinished}), or use a new workdir.")
  assert workdir_lib.read_config(str(unfinished / "config.json")).seed == 5  # its own seed
