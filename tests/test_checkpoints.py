"""checkpoints.CheckpointManager: exact round trip, keep-k, interrupted and damaged saves."""

import asyncio
import gc
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from ltpa_jax.rundir import checkpoints
from ltpa_jax.base import errors
from ltpa_jax.model import models
from ltpa_jax.core import optim
from ltpa_jax.core import steps
from tests import full_disk

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _state(seed):
  """A TrainState of a tiny VGGAttention under SGD, every leaf random (momentum included).

  The structure comes from `steps.initial_state` through `jax.eval_shape`: running the init
  takes ~20 s on CPU, and random leaves test the round trip better than the init's zeros.
  """
  model = models.VGGAttention(num_classes=10, width_multiplier=1 / 16)
  tx = optim.sgd(0.1, 0.9, 5e-5)
  shapes = jax.eval_shape(lambda rng: steps.initial_state(model, tx, rng, (32, 32, 3)),
                          jax.random.key(0))
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree.flatten(shapes)
  leaves = [rng.integers(0, 1000, s.shape).astype(s.dtype) if s.dtype == np.int32
            else rng.standard_normal(s.shape).astype(s.dtype) for s in leaves]
  return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])


def _assert_bit_exact(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def damage(checkpoint_dir):
  """Truncates every data file of a complete checkpoint."""
  files = [p for p in pathlib.Path(checkpoint_dir).rglob("*")
           if p.is_file() and p.parent.name == "d"]
  assert files
  for path in files:
    os.truncate(path, 8)


def test_round_trip_is_bit_exact_with_opt_state_and_rng(tmp_path):
  state, rng = _state(1), jax.random.fold_in(jax.random.key(7), 3)
  with checkpoints.CheckpointManager(str(tmp_path), keep=2) as manager:
    manager.save(3, state, rng)
  with checkpoints.CheckpointManager(str(tmp_path), keep=2) as manager:  # as a new process
    assert manager.latest_step() == 3
    restored, restored_rng, step = manager.restore(None, _state(2), jax.random.key(0))
  assert step == 3 and isinstance(restored, steps.TrainState)
  assert len(jax.tree.leaves(restored.opt_state)) == len(jax.tree.leaves(restored.params))
  _assert_bit_exact(restored, state)
  assert jax.random.key_impl(restored_rng) == jax.random.key_impl(rng)
  _assert_bit_exact(jax.random.key_data(restored_rng), jax.random.key_data(rng))
  _assert_bit_exact(jax.random.uniform(restored_rng, (4,)), jax.random.uniform(rng, (4,)))


def test_keeps_the_last_k(tmp_path):
  state, rng = _state(1), jax.random.key(0)
  with checkpoints.CheckpointManager(str(tmp_path), keep=2) as manager:
    for step in range(1, 5):
      manager.save(step, state, rng)
    manager.wait()
    assert manager.steps() == [3, 4]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]


def test_without_checkpoints_latest_is_none_and_restore_says_so(tmp_path):
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    assert manager.latest_step() is None
    with pytest.raises(FileNotFoundError, match="No checkpoint in"):
      manager.restore(None, _state(1), jax.random.key(0))
    manager.save(1, _state(1), jax.random.key(0))
    with pytest.raises(FileNotFoundError, match=r"step 5 .* steps \[1\]"):
      manager.restore(5, _state(1), jax.random.key(0))


def test_a_save_cut_short_is_ignored_and_cleaned_up(tmp_path):
  state, rng = _state(1), jax.random.key(0)
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    manager.save(1, state, rng)
  # What a process killed while writing step 2 leaves: orbax's temporary folder, half written.
  directory = tmp_path / "checkpoints"
  partial = directory / "2.orbax-checkpoint-tmp-1700000000000000"
  shutil.copytree(directory / "1", partial)
  damage(partial)
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    assert manager.latest_step() == 1
    restored, _, step = manager.restore(None, _state(2), rng)
  assert step == 1 and not partial.exists()
  _assert_bit_exact(restored, state)


# The rerun after a full disk, as a user makes it: a new process (python -c, argv[1] the workdir).
RERUN_AFTER_A_FULL_DISK = """
import sys
import jax
from ltpa_jax.rundir import checkpoints
from tests import test_checkpoints as t
with checkpoints.CheckpointManager(sys.argv[1]) as manager:
  assert manager.steps() == [4], manager.steps()
  restored, _, _ = manager.restore(4, t._state(3), jax.random.key(0))
  manager.save(8, t._state(2), jax.random.key(0))
t._assert_bit_exact(restored, t._state(1))
"""


def test_a_full_disk_during_a_save_raises_one_line_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch):
  """The save of step 8 finds the disk full (an ENOSPC fake: tests/full_disk.py); once there is
  room again, the rerun restores step 4 and saves step 8 over what the failed save left.

  The rerun is a new process, as the user's is (the command exits after its error line): in the
  failed save's own process, TensorStore's writes that the failure abandoned may still be
  filling the step's temporary folder while a new manager deletes it (seen with both cores busy:
  "Directory not empty").
  """
  state, rng = _state(1), jax.random.key(0)
  full_disk.fail_save_of(8, monkeypatch)
  with pytest.raises(checkpoints.DiskFullError,
                     match=r"^No space left for a checkpoint in \S+/checkpoints \(\[Errno 28\] "
                           r".*8\.orbax-checkpoint-tmp.*\)\. Free some space, then run the same "
                           r"command: it resumes from its last complete checkpoint, step 4 \(end of "
                           r"epoch 1\)\.$"):
    with checkpoints.CheckpointManager(str(tmp_path), steps_per_epoch=4) as manager:
      manager.save(4, state, rng)
      manager.save(8, _state(2), rng)
      manager.wait()
  rerun = subprocess.run([sys.executable, "-c", RERUN_AFTER_A_FULL_DISK, str(tmp_path)],
                         cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]


def test_a_damaged_latest_checkpoint_raises_naming_the_fix(tmp_path):
  """Checkpoints are numbered by SGD step; the message names each one's epoch too."""
  states, rng = [_state(1), _state(2)], jax.random.key(0)
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    for step, state in zip((4, 8), states):
      manager.save(step, state, rng)
  damage(tmp_path / "checkpoints" / "8")
  with checkpoints.CheckpointManager(str(tmp_path), steps_per_epoch=4) as manager:
    folder = re.escape(f"{manager.directory}/8")
    with pytest.raises(checkpoints.CheckpointRestoreError,
                       match=f"of step 8 \\(end of epoch 2\\) from {folder}: .* delete {folder} "
                             r"to resume from step 4 \(end of epoch 1\)"):
      manager.restore(None, _state(3), rng)
    restored, _, step = manager.restore(4, _state(3), rng)  # the documented way back
    assert manager.describe(6) == "step 6 (in epoch 2)"
  assert step == 4
  _assert_bit_exact(restored, states[0])


def _report_like_abandoned_reads():
  """Reports as a failed restore's abandoned reads make them, later: a finished task whose
  exception nobody retrieved, collected; an exception raised where nobody can catch it."""
  loop = asyncio.new_event_loop()

  async def read():
    raise ValueError("OUT_OF_RANGE")

  task = loop.create_task(read())
  loop.run_until_complete(asyncio.sleep(0))
  loop.close()
  del task
  gc.collect()

  class Callback:
    def __del__(self):
      raise RuntimeError("Event loop is closed")

  Callback()


@pytest.mark.parametrize("verbose", [False, True])
def test_a_failed_restore_leaves_no_report_after_its_error(verbose, tmp_path, caplog, monkeypatch):
  """Orbax abandons the other reads of a failed restore; what they report later is dropped, at
  its source, unless `errors.verbose` (--debug). A manager that met no failure leaves the hooks
  as they were."""
  unraisable = []
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
  monkeypatch.setattr(errors, "verbose", verbose)
  state, rng = _state(1), jax.random.key(0)
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    for step in (1, 2):
      manager.save(step, state, rng)
    manager.restore(1, state, rng)
  assert (sys.unraisablehook, logging.getLogger("asyncio").filters) == (unraisable.append, [])
  damage(tmp_path / "checkpoints" / "2")
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    manager.restore(1, state, rng)
    with pytest.raises(checkpoints.CheckpointRestoreError):
      manager.restore(2, state, rng)
  _report_like_abandoned_reads()
  reports = [r for r in caplog.records if r.name == "asyncio"] + unraisable
  assert bool(reports) == verbose, reports


def test_restoring_into_another_model_raises(tmp_path):
  with checkpoints.CheckpointManager(str(tmp_path)) as manager:
    manager.save(1, _state(1), jax.random.key(0))
    other = {"params": jax.numpy.zeros(3)}
    with pytest.raises(checkpoints.CheckpointRestoreError, match="step 1 .*run's own config"):
      manager.restore(1, other, jax.random.key(0))
