"""Orbax checkpoints of a run's whole training state, numbered by SGD step, for an exact resume.

A checkpoint is `workdir/checkpoints/<step>/` holding the TrainState (step, params,
batch_stats, opt_state) and the run's PRNG key (its raw key data). Orbax writes a checkpoint
into a temporary folder and renames it when complete, so a save cut short (crash, preemption)
leaves no checkpoint: `latest_step()` ignores it, the next manager deletes it and the run
resumes from the previous checkpoint. A complete checkpoint whose files were damaged afterwards
is not skipped: restoring it raises CheckpointRestoreError, which names the folder to delete to
resume from the previous checkpoint; nothing restarts silently. A save that finds the disk full
raises DiskFullError (one line: the run stops, its earlier checkpoints intact); resume in a new
process, as the command's rerun does: in the failed one, writes the failure abandoned may still
be filling the step's temporary folder that a new manager deletes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from typing import Callable

from absl import logging as absl_logging
import jax
import orbax.checkpoint as ocp

from ltpa_jax.base import errors

SUBDIR = "checkpoints"
# asyncio's reports of the futures and tasks an event loop left unfinished or unretrieved.
_ASYNCIO_LOGGER = logging.getLogger("asyncio")
_ASYNCIO_LEFTOVERS = ("Task exception was never retrieved", "Future exception was never retrieved",
                      "Task was destroyed but it is pending!")


class CheckpointRestoreError(errors.UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (damaged, or another state structure)."""


class DiskFullError(errors.UserError, OSError):
  """A save failed for want of space (or quota); the earlier checkpoints are untouched."""


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
    self._keep_reports = _drop_abandoned_reports()  # until a close that follows no failure
    _drop_reports_of_a_full_disk()

  def save(self, step: int, state, rng: jax.Array):
    """Saves `state` and the typed PRNG key `rng` as the checkpoint of SGD step `step`.

    The save ends in the background: a full disk raises DiskFullError here, at the next save, in
    `wait` or in `close`.
    """
    with self._full_disk():
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
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax and tensorstore raise bare Exceptions
      self._keep_reports = _keep_dropping  # the abandoned reads report after this
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
    with self._full_disk():
      self._manager.wait_until_finished()

  def close(self):
    """Waits for the saves in flight, then releases the manager."""
    with self._full_disk():
      self._manager.close()
    self._keep_reports()

  @contextlib.contextmanager
  def _full_disk(self):
    """Raises DiskFullError, naming the last complete checkpoint, for a save that failed for
    want of space."""
    try:
      yield
    except Exception as e:  # orbax re-raises its background thread's error
      self._keep_reports = _keep_dropping  # the abandoned writes report after this
      if not _is_disk_full(e):
        raise
      steps = sorted(self._manager.all_steps())
      resume = (f"resumes from its last complete checkpoint, {self.describe(steps[-1])}" if steps
                else "starts the run again: it has no complete checkpoint")
      raise DiskFullError(
          f"No space left for a checkpoint in {self.directory} ({_reason(e)}). Free some space, "
          f"then run the same command: it {resume}.") from e

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


def _drop_abandoned_reports() -> Callable[[], None]:
  """Silences the reports of the reads and writes that a failed restore or save abandons, unless
  `errors.verbose`; returns the function that restores the hooks as they were.

  Orbax reads and writes the arrays concurrently in an event loop and closes it at the first
  failure. The other operations then fail on their own, after the error was raised, at a time
  that depends on the machine's load: asyncio reports each one it had finished ("Task exception
  was never retrieved", with its traceback) through its logger when it is garbage-collected, and
  each TensorStore operation still in flight fails to call back into the closed loop ("Event
  loop is closed") through sys.unraisablehook. A manager drops both from its start (a report
  may come before the error reaches it); after a failure they stay dropped, after a clean close
  everything is as before.
  """
  if errors.verbose:
    return _keep_dropping
  previous = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  def keep(record):
    return record.getMessage().split("\n", 1)[0] not in _ASYNCIO_LEFTOVERS

  def restore_hooks():
    sys.unraisablehook = previous
    _ASYNCIO_LOGGER.removeFilter(keep)

  sys.unraisablehook = hook
  _ASYNCIO_LOGGER.addFilter(keep)
  return restore_hooks


def _keep_dropping() -> None:
  """In place of restoring the hooks: after a failure, its reports are still to come."""


def _is_disk_full(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, is ENOSPC (no space left) or EDQUOT."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in errors.DISK_FULL:
      return True
    error = error.__cause__ or error.__context__
  return False


def _drop_reports_of_a_full_disk():
  """Keeps orbax's logged tracebacks of a save that failed for want of space off the console
  (DiskFullError says it in one line), unless verbose logs were asked for (-v 0 or more)."""
  absl_logger = absl_logging.get_absl_logger()
  if not any(f is _drop_full_disk_logs for f in absl_logger.filters):
    absl_logger.addFilter(_drop_full_disk_logs)


def _drop_full_disk_logs(record) -> bool:
  return not (record.exc_info and _is_disk_full(record.exc_info[1])
              and absl_logging.get_verbosity() < absl_logging.INFO)


def _reason(error: Exception, limit: int = 600) -> str:
  """The gist of an orbax error: one line, without TensorStore's spec dump."""
  message = re.split(r"See full TensorStore details| \[tensorstore_spec", str(error))[0]
  message = " ".join(message.split()).rstrip(".")
  return message if len(message) <= limit else message[:limit] + " ..."


def _tree(state, rng):
  return {"state": state, "rng": jax.random.key_data(rng)}
