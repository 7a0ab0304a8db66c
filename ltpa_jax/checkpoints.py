"""Orbax checkpoints of a run's whole training state, one per epoch, for an exact resume.

A checkpoint is `workdir/checkpoints/<epoch>/` holding the TrainState (step, params,
batch_stats, opt_state) and the run's PRNG key (its raw key data). Orbax writes a checkpoint
into a temporary folder and renames it when complete, so a save cut short (crash, preemption)
leaves no checkpoint: `latest_epoch()` ignores it, the next manager deletes it and the run
resumes from the previous epoch. A complete checkpoint whose files were damaged afterwards is
not skipped: restoring it raises CheckpointRestoreError, which names the folder to delete to
resume from the previous epoch; nothing restarts silently.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from ltpa_jax import errors

SUBDIR = "checkpoints"


class CheckpointRestoreError(errors.UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (damaged, or another state structure)."""


class CheckpointManager:
  """Saves and restores the training state of a run in `workdir`, keeping the last `keep`.

  Saves are asynchronous: `save` returns once the arrays are copied to the host (the state may
  then be donated) and writes in the background. Call `close()` (or use `with`) before exiting.
  """

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), SUBDIR)
    self._manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True))

  def save(self, epoch: int, state, rng: jax.Array):
    """Saves `state` and the typed PRNG key `rng` as the checkpoint of `epoch`."""
    self._manager.save(epoch, args=ocp.args.StandardSave(_tree(state, rng)))

  def epochs(self) -> list[int]:
    """The epochs with a complete checkpoint, in increasing order (after the saves in flight)."""
    self.wait()
    return sorted(self._manager.all_steps())

  def latest_epoch(self) -> int | None:
    """The last epoch with a complete checkpoint, or None."""
    epochs = self.epochs()
    return epochs[-1] if epochs else None

  def restore(self, epoch: int | None, target_state, rng_like: jax.Array):
    """Restores the checkpoint of `epoch` (None: the latest) into the structure, dtypes and
    shardings of `target_state` and the key implementation of `rng_like`.

    Returns (state, rng, epoch).
    """
    epochs = self.epochs()
    if epoch is None and not epochs:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
      raise FileNotFoundError(f"No checkpoint of epoch {epoch} in {self.directory}; there are "
                              f"epochs {epochs}.")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        _tree(target_state, rng_like))
    try:
      restored = self._manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax and tensorstore raise bare Exceptions
      previous = [earlier for earlier in epochs if earlier < epoch]
      fix = (f"delete {self.directory}/{epoch} to resume from epoch {previous[-1]}" if previous
             else f"delete {self.directory} to start the run again")
      raise CheckpointRestoreError(
          f"Cannot restore the checkpoint of epoch {epoch} from {self.directory}/{epoch}: "
          f"{_reason(e)} If its files are damaged, {fix}; if the model or optimiser changed, "
          "resume with the run's own config.") from e
    rng = jax.random.wrap_key_data(restored["rng"], impl=jax.random.key_impl(rng_like))
    return restored["state"], rng, epoch

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


def _reason(error: Exception, limit: int = 600) -> str:
  """The gist of an orbax error: one line, without TensorStore's spec dump."""
  message = " ".join(str(error).split("See full TensorStore details")[0].split())
  return message if len(message) <= limit else message[:limit] + " ..."


def _tree(state, rng):
  return {"state": state, "rng": jax.random.key_data(rng)}
