"""Orbax checkpoints of a run's whole training state, numbered by SGD step, for an exact resume.

A checkpoint is `workdir/checkpoints/<step>/` holding the TrainState (step, params,
batch_stats, opt_state) and the run's PRNG key (its raw key data). Orbax writes a checkpoint
into a temporary folder and renames it when complete, so a save cut short (crash, preemption)
leaves no checkpoint: `latest_step()` ignores it, the next manager deletes it and the run
resumes from the previous checkpoint. A complete checkpoint whose files were damaged afterwards
is not skipped: restoring it raises CheckpointRestoreError, which names the folder to delete to
resume from the previous checkpoint; nothing restarts silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

import jax
import orbax.checkpoint as ocp

from ltpa_jax import errors

SUBDIR = "checkpoints"
# asyncio's reports of the futures and tasks an event loop left unfinished or unretrieved.
_ASYNCIO_LOGGER = logging.getLogger("asyncio")
_ASYNCIO_LEFTOVERS = ("Task exception was never retrieved", "Future exception was never retrieved",
                      "Task was destroyed but it is pending!")


class CheckpointRestoreError(errors.UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (damaged, or another state structure)."""


class CheckpointManager:
  """Saves and restores the training state of a run in `workdir`, keeping the last `keep`.

  Saves are asynchronous: `save` returns once the arrays are copied to the host (the state may
  then be donated) and writes in the background. Call `close()` (or use `with`) before exiting.
  With `steps_per_epoch`, messages name a step's epoch too.
  """

  def __init__(self, workdir: str, keep: int = 3, steps_per_epoch: int | None = None):
    self.directory = os.path.join(os.path.abspath(workdir), SUBDIR)
    self._steps_per_epoch = steps_per_epoch
    self._manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True))

  def save(self, step: int, state, rng: jax.Array):
    """Saves `state` and the typed PRNG key `rng` as the checkpoint of SGD step `step`."""
    self._manager.save(step, args=ocp.args.StandardSave(_tree(state, rng)))

  def steps(self) -> list[int]:
    """The steps with a complete checkpoint, in increasing order (after the saves in flight)."""
    self.wait()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The last step with a complete checkpoint, or None."""
    steps = self.steps()
    return steps[-1] if steps else None

  def restore(self, step: int | None, target_state, rng_like: jax.Array):
    """Restores the checkpoint of `step` (None: the latest) into the structure, dtypes and
    shardings of `target_state` and the key implementation of `rng_like`.

    Returns (state, rng, step).
    """
    steps = self.steps()
    if step is None and not steps:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    step = steps[-1] if step is None else step
    if step not in steps:
      raise FileNotFoundError(f"No checkpoint of step {step} in {self.directory}; there are "
                              f"steps {steps}.")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        _tree(target_state, rng_like))
    try:
      with _dropping_abandoned_reads():
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax and tensorstore raise bare Exceptions
      folder = os.path.join(self.directory, str(step))
      previous = [earlier for earlier in steps if earlier < step]
      fix = (f"delete {folder} to resume from {self.describe(previous[-1])}" if previous
             else f"delete {self.directory} to start the run again")
      raise CheckpointRestoreError(
          f"Cannot restore the checkpoint of {self.describe(step)} from {folder}: {_reason(e)}. "
          f"If its files are damaged, {fix}; if the model or optimiser changed, resume with the "
          "run's own config.") from e
    rng = jax.random.wrap_key_data(restored["rng"], impl=jax.random.key_impl(rng_like))
    return restored["state"], rng, step

  def describe(self, step: int) -> str:
    """"step 32 (end of epoch 2)", "step 35 (in epoch 3)", or "step 32" without steps_per_epoch."""
    return describe(step, self._steps_per_epoch)

  def wait(self):
    """Blocks until the saves in flight are written."""
    self._manager.wait_until_finished()

  def close(self):
    """Waits for the saves in flight, then releases the manager."""
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def describe(step: int, steps_per_epoch: int | None, num_epochs: int | None = None) -> str:
  """"step 32 (end of epoch 2)", "step 35 (in epoch 3)", "step 35 (in epoch 3 of 100)" with
  `num_epochs`, or "step 32" without steps_per_epoch."""
  if not steps_per_epoch:
    return f"step {step}"
  epoch, rest = divmod(step, steps_per_epoch)
  of = f" of {num_epochs}" if num_epochs else ""
  return f"step {step} ({f'in epoch {epoch + 1}' if rest else f'end of epoch {epoch}'}{of})"


@contextlib.contextmanager
def _dropping_abandoned_reads():
  """Silences the reports of the reads that a failed restore abandons, unless `errors.verbose`.

  Orbax reads the arrays concurrently in an event loop and closes it at the first failure. The
  other reads then fail on their own, after the restore has raised, at a time that depends on
  the machine's load: asyncio reports each one it had finished ("Task exception was never
  retrieved", with the read's traceback) through its logger when it is garbage-collected, and
  each TensorStore read still in flight fails to call back into the closed loop ("Event loop is
  closed") through sys.unraisablehook. Both are dropped from the start of a restore; after a
  failure they stay dropped (the reports come later), after a success everything is as before.
  """
  if errors.verbose:
    yield
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  def keep(record):
    return record.getMessage().split("\n", 1)[0] not in _ASYNCIO_LEFTOVERS

  sys.unraisablehook = hook
  _ASYNCIO_LOGGER.addFilter(keep)
  yield  # a failure raises here: the hook and the filter stay
  sys.unraisablehook = previous
  _ASYNCIO_LOGGER.removeFilter(keep)


def _reason(error: Exception, limit: int = 600) -> str:
  """The gist of an orbax error: one line, without TensorStore's spec dump."""
  message = re.split(r"See full TensorStore details| \[tensorstore_spec", str(error))[0]
  message = " ".join(message.split()).rstrip(".")
  return message if len(message) <= limit else message[:limit] + " ..."


def _tree(state, rng):
  return {"state": state, "rng": jax.random.key_data(rng)}
