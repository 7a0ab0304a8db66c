"""SGD as torch.optim.SGD does it, and learning-rate schedules counted in epochs.

The float hyperparameters in HYPERPARAMETERS are values, not constants of the program: a run's
step takes them as an argument (`hyperparameters`), so runs that differ only in them (a sweep,
`parallel.RunAxis`) train in one compiled program.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np
import optax

# The config's float fields a run's step takes as values: a sweep may vary them in one program.
HYPERPARAMETERS = ("learning_rate", "weight_decay", "momentum", "lr_decay")


def hyperparameters(config, dtype=np.float32) -> dict[str, np.ndarray]:
  """The config's HYPERPARAMETERS as scalars of `dtype` (the params' dtype, see
  `steps.params_dtype`): what the training steps and schedules take."""
  return {name: np.asarray(config[name], dtype) for name in HYPERPARAMETERS}


def _piecewise(config, steps_per_epoch: int, learning_rate, decay) -> optax.Schedule:
  """x lr_decay at each of lr_boundaries_epochs."""
  boundaries = sorted({int(e * steps_per_epoch) for e in config.lr_boundaries_epochs})

  def schedule(step):
    value = learning_rate
    for boundary in boundaries:
      value = jnp.where(step < boundary, value, value * decay)
    return value

  return schedule


def _step(config, steps_per_epoch: int, learning_rate, decay) -> optax.Schedule:
  """x lr_decay every lr_step_epochs."""
  period = config.lr_step_epochs * steps_per_epoch
  return lambda step: jnp.where(step <= 0, learning_rate,
                                learning_rate * jnp.power(decay, jnp.floor(step / period)))


SCHEDULES = {"piecewise": _piecewise, "step": _step}  # config.lr_schedule's choices


def learning_rate_schedule(config, steps_per_pass: int,
                           hparams: Mapping | None = None) -> optax.Schedule:
  """The learning rate as a function of the SGD step, from the config's schedule in epochs
  (`passes_per_epoch` passes of `steps_per_pass` steps each), starting at `hparams`'
  learning_rate and decaying by their lr_decay (default: the config's; traced values too).

  With `lr_scheduler_steps_first`, as a torch scheduler stepped at the START of each epoch under
  PyTorch >= 1.1 (the reference's main.py): its first step skips the schedule's first value, so
  each decay lands one epoch early.
  """
  if config.lr_schedule not in SCHEDULES:
    raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))}; got "
                     f"{config.lr_schedule!r}")
  hparams = config if hparams is None else hparams
  steps_per_epoch = steps_per_pass * config.passes_per_epoch
  schedule = SCHEDULES[config.lr_schedule](config, steps_per_epoch, hparams["learning_rate"],
                                           hparams["lr_decay"])
  if config.lr_scheduler_steps_first:  # epoch e trains at the value torch's epoch e + 1 has
    return lambda step: schedule(step + steps_per_epoch)
  return schedule


def sgd(learning_rate: optax.ScalarOrSchedule, momentum,
        weight_decay) -> optax.GradientTransformation:
  """torch.optim.SGD: g += wd * p (every parameter); buf = m * buf + g; p -= lr * buf."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate),
  )
