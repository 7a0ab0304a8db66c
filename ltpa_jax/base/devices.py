"""Where a command computes, in words, and the warning for a recipe started on a CPU."""

from __future__ import annotations

import sys

import jax

# Below this width, or on part of a dataset, a run is a smoke run: no warning on a CPU.
RECIPE_WIDTH = 1.0


def describe(dtype: str, device_count: int | None = None) -> str:
  """E.g. "1 x NVIDIA H200 (gpu), 1 process, bfloat16": `device_count` devices (default: every
  device of every process), the processes, the compute dtype."""
  device = jax.devices()[0]
  count = len(jax.devices()) if device_count is None else device_count
  processes = jax.process_count()
  return (f"{count} x {device.device_kind} ({device.platform}), {processes} "
          f"process{'es' if processes > 1 else ''}, {dtype}")


def announce(verb: str, dtype: str, device_count: int | None = None, file=None):
  """Prints where a command computes, e.g. "Attacking on 1 x cpu (cpu), 1 process, float32."
  (`describe`), on stdout unless `file` says otherwise."""
  print(f"{verb} on {describe(dtype, device_count)}.", file=file or sys.stdout, flush=True)


def cpu_warning(platform: str, width_multiplier: float, train_examples: int,
                seconds_per_step: float, steps: int) -> str | None:
  """The warning for a full-width model on a full dataset (`train_examples` 0) on a CPU: the
  time of its `steps` SGD steps at `seconds_per_step`, and what to do. None for any other run."""
  if platform != "cpu" or width_multiplier < RECIPE_WIDTH or train_examples:
    return None
  return (f"warning: on this CPU the run would take about "
          f"{duration(seconds_per_step * steps)} ({seconds_per_step:.3g} s per step, {steps:,} "
          f"steps). The recipes need a GPU or TPU: install jax's GPU build with "
          f"pip install 'jax[cuda12]=={jax.__version__}', or try a smoke run with --config tiny "
          f"(configs/tiny.py). Training goes on.")


def duration(seconds: float) -> str:
  """`seconds` in the largest unit that leaves at least 2 of it: "22 days", "5 hours"."""
  for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
    if seconds >= 2 * size:
      return f"{seconds / size:.0f} {unit}"
  return f"{seconds:.0f} seconds"
