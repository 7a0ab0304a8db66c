"""SGD as torch.optim.SGD does it, and learning-rate schedules counted in epochs."""

from __future__ import annotations

import optax


def _piecewise(config, steps_per_epoch: int) -> optax.Schedule:
  """x lr_decay at each of lr_boundaries_epochs."""
  boundaries = {int(e * steps_per_epoch): config.lr_decay for e in config.lr_boundaries_epochs}
  return optax.piecewise_constant_schedule(config.learning_rate, boundaries)


def _step(config, steps_per_epoch: int) -> optax.Schedule:
  """x lr_decay every lr_step_epochs."""
  return optax.exponential_decay(config.learning_rate, config.lr_step_epochs * steps_per_epoch,
                                 config.lr_decay, staircase=True)


SCHEDULES = {"piecewise": _piecewise, "step": _step}  # config.lr_schedule's choices


def learning_rate_schedule(config, steps_per_pass: int) -> optax.Schedule:
  """The learning rate as a function of the SGD step, from the config's schedule in epochs
  (`passes_per_epoch` passes of `steps_per_pass` steps each)."""
  if config.lr_schedule not in SCHEDULES:
    raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))}; got "
                     f"{config.lr_schedule!r}")
  return SCHEDULES[config.lr_schedule](config, steps_per_pass * config.passes_per_epoch)


def sgd(learning_rate: optax.ScalarOrSchedule, momentum: float,
        weight_decay: float) -> optax.GradientTransformation:
  """torch.optim.SGD: g += wd * p (every parameter); buf = m * buf + g; p -= lr * buf."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate),
  )
