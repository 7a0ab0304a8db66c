"""SGD as torch.optim.SGD does it, and learning-rate schedules counted in epochs."""

from __future__ import annotations

import optax


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate as a function of the step, from the config's epoch-based schedule."""
  steps_per_epoch *= config.passes_per_epoch
  if config.lr_schedule == "piecewise":
    boundaries = {int(e * steps_per_epoch): config.lr_decay for e in config.lr_boundaries_epochs}
    return optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  if config.lr_schedule == "step":
    return optax.exponential_decay(config.learning_rate, config.lr_step_epochs * steps_per_epoch,
                                   config.lr_decay, staircase=True)
  raise ValueError(f"lr_schedule must be 'piecewise' or 'step', got {config.lr_schedule!r}")


def sgd(learning_rate: optax.ScalarOrSchedule, momentum: float,
        weight_decay: float) -> optax.GradientTransformation:
  """torch.optim.SGD: g += wd * p (every parameter); buf = m * buf + g; p -= lr * buf."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate),
  )
