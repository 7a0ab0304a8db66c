"""One build for every command: a validated config's model, schedule, optimiser and dataset."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Sequence

import jax
import ml_collections
import optax

from ltpa_jax.rundir import checkpoints
from ltpa_jax.config import validation as config_validation
from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.model import models
from ltpa_jax.core import optim
from ltpa_jax.core import parallel
from ltpa_jax.core import plan as plan_lib
from ltpa_jax.core import steps
from ltpa_jax.rundir import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What a command needs of a config: its model, schedule and optimiser over its dataset.

  The optimiser and schedule take the run's float hyperparameters (`optim.hyperparameters`, a
  run's own or the config's), so runs that differ only in them share one compiled program."""
  config: ml_collections.ConfigDict
  dataset: datasets.Dataset
  model: models.VGGAttention
  plan: plan_lib.Plan | None  # where each step falls; None: the dataset's size is unknown

  def schedule(self, hparams=None) -> optax.Schedule:
    """The learning rate by SGD step, of `hparams` (default: the config's)."""
    # Unknown sizes: the optimiser state has the same structure for every pass length.
    return optim.learning_rate_schedule(self.config, self.plan.steps_per_pass if self.plan else 1,
                                        hparams)

  def optimiser(self, hparams=None) -> optax.GradientTransformation:
    """SGD with `hparams` (default: the config's); its state's structure is that of any."""
    hparams = self.config if hparams is None else hparams
    return optim.sgd(self.schedule(hparams), hparams["momentum"], hparams["weight_decay"])

  def initial_state(self, rng) -> steps.TrainState:
    return steps.initial_state(self.model, self.optimiser(), rng, self.dataset.info.image_shape)

  def train_steps(self, state, data, batches, rng, hparams, first):
    """`steps.train_steps` with the optimiser of `hparams`, a run's hyperparameters (traced)."""
    return steps.train_steps(self.model, self.optimiser(hparams), self.dataset.info, state, data,
                             batches, rng, first)

  @functools.cached_property
  def predict(self):
    """`steps.predictions` of the model, jitted: (state, images) -> (logits, maps)."""
    return jax.jit(functools.partial(steps.predictions, self.model, self.dataset.info))

  def evaluation(self, batch_size: int | None = None):
    """`steps.evaluate` of the model, jitted: (state, data) -> metrics, in batches of
    `batch_size` (default: the config's eval_batch_size), on one device."""
    return jax.jit(functools.partial(steps.evaluate, self.model, self.dataset.info,
                                     batch_size or self.config.eval_batch_size))

  def compile_steps(self, layout: parallel.Layout, shapes, state, data: datasets.Examples, rng,
                    hparams) -> dict:
    """`train_steps` in `layout` (one run or a run axis), compiled for each call shape (steps,
    batch) in `shapes`, for states, data, keys and hyperparameters laid out like these:
    {shape: compiled} (`parallel.compile_steps`)."""
    return parallel.compile_steps(self.train_steps, layout, shapes, state, data, rng, hparams)

  def compiled_evaluation(self, layout, state, data: datasets.Examples):
    """`steps.evaluate` in `layout`, in batches of the config's eval_batch_size, compiled for
    states and data laid out like these: (state, data) -> metrics."""
    return jax.jit(layout.evaluate(functools.partial(
        steps.evaluate, self.model, self.dataset.info, self.config.eval_batch_size))).lower(
            state, data).compile()

  def abstract_checkpoint(self) -> dict:
    """The structure, shapes and dtypes of a checkpoint of this config (nothing computed)."""
    return jax.eval_shape(lambda: steps.checkpoint_tree(self.initial_state(jax.random.key(0))))

  def restore_state(self, workdir: str, step: int | None = None) -> tuple[steps.TrainState, int]:
    """(state, step) of the run of this config in `workdir` at SGD `step` (None: the latest);
    UserError naming the command that trains it if it has no checkpoint."""
    if os.path.isdir(os.path.join(workdir, checkpoints.SUBDIR)):  # never made here
      with checkpoints.CheckpointManager(workdir) as ckpt:
        if ckpt.latest_step() is not None:
          saved, _, step = ckpt.restore(step, self.abstract_checkpoint(), jax.random.key(0))
          return saved["state"], step
    raise errors.UserError(
        f"No checkpoint in {workdir}: train the run first ({workdir_lib.train_command(workdir)}).")


def build(config: ml_collections.ConfigDict, num_devices: int = 1,
          splits: Sequence[str] = datasets.SPLITS,
          make_dataset: Callable[[ml_collections.ConfigDict], datasets.Dataset] | None = None,
          validate: bool = True) -> Experiment:
  """Validates `config` (for a run on `num_devices`; not if `validate` is False: the caller
  did), then builds its experiment.

  Reads the `splits` of the config's dataset once (none: only its names and sizes), or takes
  the dataset `make_dataset(config)` makes (synthetic data).
  """
  if validate:
    config_validation.validate(config, num_devices)
  if make_dataset is not None:
    dataset = make_dataset(config)
  else:
    dataset = datasets.load(config.dataset, config.data_dir, config.manual_dir,
                            train_examples=config.train_examples, splits=splits)
  dataset = datasets.with_statistics(dataset, config.data_mean, config.data_std)
  plan = plan_lib.for_config(config, dataset.num_train) if dataset.num_train else None
  return Experiment(config, dataset, models.create_model(config.model, dataset.info.num_classes),
                    plan)

