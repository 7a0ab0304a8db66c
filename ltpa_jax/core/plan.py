"""Where an SGD step falls: its epoch, pass and call, and when periodic actions are due.

A run counts SGD steps only; everything else is derived from that one counter, so a run resumed
at any step continues exactly as it would have.
"""

from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class Plan:
  """Where an SGD step falls: epochs of `passes_per_epoch` shuffled passes over `num_examples`,
  a pass of full batches then the smaller remainder, run in calls of `steps_per_call` full
  batches (0: a pass's full batches in one call)."""
  num_examples: int
  batch_size: int
  passes_per_epoch: int
  num_epochs: int
  steps_per_call: int

  @property
  def full_batches(self) -> int:
    return self.num_examples // self.batch_size

  @property
  def steps_per_pass(self) -> int:  # with a last, smaller batch, as torch's drop_last=False
    return -(-self.num_examples // self.batch_size)

  @property
  def steps_per_epoch(self) -> int:
    return self.steps_per_pass * self.passes_per_epoch

  @property
  def total_steps(self) -> int:
    return self.steps_per_epoch * self.num_epochs

  @property
  def images_per_epoch(self) -> int:
    return self.num_examples * self.passes_per_epoch

  def call(self, step: int) -> tuple[int, int, int]:
    """(pass index, its step `first`, steps) of the call that starts at SGD step `step`."""
    pass_index, first = divmod(step, self.steps_per_pass)
    if first >= self.full_batches:
      return pass_index, first, 1
    return pass_index, first, min(self.steps_per_call or self.full_batches,
                                  self.full_batches - first)

  def call_shapes(self) -> list[tuple[int, int]]:
    """The shapes (steps, batch) of the calls of a pass, from its start."""
    shapes, step = [], 0
    while step < self.steps_per_pass:
      _, _, count = self.call(step)
      shape = (count, min(self.batch_size, self.num_examples - step * self.batch_size))
      shapes += [shape] if shape not in shapes else []
      step += count
    return shapes

  def images_in_epoch(self, step: int) -> int:
    """How many images an epoch's first `step` steps train."""
    passes, first = divmod(step, self.steps_per_pass)
    return passes * self.num_examples + min(first * self.batch_size, self.num_examples)


def is_time(step: int, every: int) -> bool:
  """Whether a periodic action due every `every` steps (or epochs) falls at `step`."""
  return step % every == 0


def for_config(config, num_examples: int) -> Plan:
  """The plan of a run of `config` on `num_examples` training examples.

  `config.steps_per_call` 0 (auto) becomes one step per call on CPU, where XLA runs steps ~10x
  slower inside loops and a call must stay short enough to stop promptly, and a whole pass per
  call (0) on accelerators (a CIFAR pass takes a few seconds there).
  """
  steps_per_call = config.steps_per_call
  if not steps_per_call and jax.default_backend() == "cpu":
    steps_per_call = 1
  return Plan(num_examples, config.batch_size, config.passes_per_epoch, config.num_epochs,
              steps_per_call)
