"""One build for every command: a validated config's model, schedule, optimiser and dataset."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import ml_collections
import optax

from ltpa_jax import config_validation
from ltpa_jax import datasets
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import plan as plan_lib
from ltpa_jax import steps


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What a command needs of a config: its model, schedule and optimiser over its dataset."""
  config: ml_collections.ConfigDict
  dataset: datasets.Dataset
  model: models.VGGAttention
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  plan: plan_lib.Plan | None  # where each step falls; None: the dataset's size is unknown

  def initial_state(self, rng) -> steps.TrainState:
    return steps.initial_state(self.model, self.tx, rng, self.dataset.info.image_shape)

  @functools.cached_property
  def predict(self):
    """`steps.predictions` of the model, jitted: (state, images) -> (logits, maps)."""
    return jax.jit(functools.partial(steps.predictions, self.model, self.dataset.info))

  def abstract_checkpoint(self) -> dict:
    """The structure, shapes and dtypes of a checkpoint of this config (nothing computed)."""
    return jax.eval_shape(lambda: steps.checkpoint_tree(self.initial_state(jax.random.key(0))))


def build(config: ml_collections.ConfigDict, num_devices: int = 1,
          splits: Sequence[str] = datasets.SPLITS,
          make_dataset: Callable[[ml_collections.ConfigDict], datasets.Dataset] | None = None
          ) -> Experiment:
  """Validates `config` (for a run on `num_devices`), then builds its experiment.

  Reads the `splits` of the config's dataset once (none: only its names and sizes), or takes
  the dataset `make_dataset(config)` makes (synthetic data).
  """
  config_validation.validate(config, num_devices)
  if make_dataset is not None:
    dataset = make_dataset(config)
  else:
    dataset = datasets.load(config.dataset, config.data_dir, config.manual_dir,
                            train_examples=config.train_examples, splits=splits)
  plan = plan_lib.for_config(config, dataset.num_train) if dataset.num_train else None
  # Unknown sizes: the optimiser state has the same structure for every pass length.
  schedule = optim.learning_rate_schedule(config, plan.steps_per_pass if plan else 1)
  return Experiment(config, dataset, models.create_model(config.model, dataset.info.num_classes),
                    schedule, optim.sgd(schedule, config.momentum, config.weight_decay), plan)

