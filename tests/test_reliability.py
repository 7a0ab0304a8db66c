"""Faults: SIGKILL and SIGTERM mid-run, two runs on one workdir, a full disk, a diverging loss,
bad input (tiny models on CPU)."""

import json
import logging
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import tiny
from ltpa_jax.data import datasets
from ltpa_jax.data import tfds_builders
from ltpa_jax.rundir import checkpoints
from ltpa_jax import cli
from ltpa_jax.training import experiment
from ltpa_jax.core import optim
from ltpa_jax.training import loop as train
from ltpa_jax.rundir import workdir_lock
from tests import exact

REPO = pathlib.Path(__file__).resolve().parents[1]
# Not compared: timings, and which start of a run trained an epoch.
TIMING = ("images_per_second", "epoch_seconds", "wall_seconds", "start")


def start_run(workdir, data_dir, *flags, float64=False, full_disk_step=None):
  """train.py on the fake data: 4 epochs of 4 steps (30 images, batch 8), one step per call
  unless `flags` change it; `float64`: a float64 model in 64-bit JAX; `full_disk_step`: the save
  of that step finds the disk full (tests/full_disk.py)."""
  main = ["train.py"] if full_disk_step is None else ["-m", "tests.full_disk", str(full_disk_step)]
  command = [sys.executable, *main, "--config", "configs/tiny.py", "--workdir", str(workdir),
             "--config.dataset=fashion_mnist", f"--config.data_dir={data_dir}",
             "--config.batch_size=8", "--config.eval_batch_size=5", "--config.num_epochs=4",
             "--config.lr_boundaries_epochs=(2,)", "--config.attention_images=2", *flags]
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}
  if float64:
    command.append("--config.model.dtype=float64")
    env["JAX_ENABLE_X64"] = "1"
  return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)


def run_until(workdir, data_dir, line_start, sig, *flags, float64=False):
  """Starts a run and sends `sig` when it prints a line starting with `line_start`."""
  process = start_run(workdir, data_dir, *flags, float64=float64)
  output = []
  for line in process.stdout:
    output.append(line)
    if line.startswith(line_start):
      process.send_signal(sig)
      break
  output.append(process.stdout.read())
  process.wait(timeout=300)
  return process.returncode, "".join(output)


def finish(workdir, data_dir, *flags, float64=False):
  process = start_run(workdir, data_dir, *flags, float64=float64)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output
  return output


def final_state(workdir):
  """The latest checkpoint's arrays and the history without timings."""
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    step = ckpt.latest_step()
    path = pathlib.Path(ckpt.directory) / str(step)
  with open(pathlib.Path(workdir) / "history.json") as f:
    history = [{k: v for k, v in h.items() if k not in TIMING} for h in json.load(f)]
  config = json.loads((pathlib.Path(workdir) / "config.json").read_text())
  target = experiment.build(ml_collections.ConfigDict(config), splits=()).abstract_checkpoint()
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    saved, _, _ = ckpt.restore(step, target, jax.random.key(0))
  return step, jax.tree.leaves(saved), history, path


@pytest.fixture
def uninterrupted(prepared_fake_data, tmp_path):
  workdir = tmp_path / "uninterrupted"
  finish(workdir, prepared_fake_data)
  return final_state(workdir)


def assert_same_run(a, b):
  step_a, leaves_a, history_a, _ = a
  step_b, leaves_b, history_b, _ = b
  assert step_a == step_b == 16
  assert history_a == history_b  # every metric of every epoch, bit for bit
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(uninterrupted, prepared_fake_data,
                                                          tmp_path):
  """Same machine, float32, fixed seeds: the resumed run is bit-identical (so runs are also
  deterministic: an uninterrupted run repeated gives the same numbers). Bitwise is the claim
  because both runs execute the very same compiled programs on the same inputs: one step per
  call, and a resume restores the exact bits of an epoch's end."""
  workdir = tmp_path / "killed"
  code, output = run_until(workdir, prepared_fake_data, "epoch 2/4", signal.SIGKILL)
  assert code == -signal.SIGKILL, output
  assert not (workdir / "results.json").exists()
  killed = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())["pid"]  # left behind
  output = finish(workdir, prepared_fake_data)
  assert f"Workdir {workdir}: taking over the lock of PID {killed} (since " in output, output
  assert "Resuming" in output
  # The time of both starts, the first's up to its last recorded epoch.
  assert re.search(r"\nDone in \d+ s of training over 2 starts: final test top-1 error ", output)
  starts = [h["start"] for h in json.loads((workdir / "history.json").read_text())]
  assert starts == sorted(starts) and set(starts) == {1, 2}, starts  # epoch 1 or 2 saved first
  assert_same_run(final_state(workdir), uninterrupted)
  assert not (workdir / workdir_lock.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_is_refused_and_the_first_runs_as_alone(
    uninterrupted, prepared_fake_data, tmp_path):
  """The first process holds the workdir from before its first line; it is paused (SIGSTOP)
  while the second runs, so that the second surely meets it running. The second ends with one
  line naming the first, exit status 2, before compiling anything; the first then ends bitwise
  as a lone run."""
  workdir = tmp_path / "busy"
  first = start_run(workdir, prepared_fake_data)
  output = []
  for line in first.stdout:
    output.append(line)
    if "training images" in line:  # the workdir is held
      break
  first.send_signal(signal.SIGSTOP)
  try:
    second = start_run(workdir, prepared_fake_data)
    refused, _ = second.communicate(timeout=300)
  finally:
    first.send_signal(signal.SIGCONT)
  output.append(first.communicate(timeout=300)[0])
  assert first.returncode == 0, "".join(output)
  assert second.returncode == cli.EXIT_STATUS, refused
  assert re.fullmatch(f"error: Workdir {workdir} is in use by another command: PID {first.pid} on "
                      r"host \S+, since [\d-]+ [\d:]+ UTC\. Wait for it to end \(or stop it: Ctrl-C "
                      r"saves a run\), then run this command again\.\n", refused), refused
  assert_same_run(final_state(workdir), uninterrupted)


@pytest.mark.slow
def test_a_full_disk_during_a_save_ends_the_run_with_one_line_and_keeps_the_last_checkpoint(
    prepared_fake_data, tmp_path):
  """The save of step 8 (end of epoch 2) finds the disk full: the run ends at a later save with
  one line and exit status 2, no library report, and its checkpoint of epoch 1 restores. The
  same command then resumes from it, saying that the epochs recorded after it train again."""
  workdir = tmp_path / "full"
  process = start_run(workdir, prepared_fake_data, full_disk_step=8)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == cli.EXIT_STATUS, output
  *lines, error = output.splitlines()
  assert all(re.match(r"Training on |Compiled|epoch [123]/4 ", line) for line in lines), output
  assert re.fullmatch(f"error: No space left for a checkpoint in {workdir}/checkpoints "
                      r"\(\[Errno 28\] No space left on device: \S+\)\. Free some space, then run "
                      r"the same command: it resumes from its last complete checkpoint, step 4 "
                      r"\(end of epoch 1\)\.", error), output
  step, leaves, _, _ = final_state(workdir)
  assert step == 4 and leaves
  assert not (workdir / workdir_lock.LOCK_FILE).exists()
  output = finish(workdir, prepared_fake_data)
  assert re.search(f"{workdir}/history.json records epoch [34], but the last complete "
                   r"checkpoint is step 4 \(end of epoch 1\) \(a save did not finish\): training "
                   r"again from there\.\n", output), output
  assert f"Resuming {workdir} at step 4 (epoch 2)." in output


@pytest.mark.slow
def test_ctrl_c_saves_prints_a_resume_command_that_ends_like_an_uninterrupted_run(
    uninterrupted, prepared_fake_data, tmp_path):
  """The first SIGINT saves within the epoch and prints the command to resume; that command ends
  bitwise as the uninterrupted run (the same programs, one step per call, and the epoch's metric
  sums continued in step order: train_loss included). The resumed epoch's images/s counts only
  the images trained after the resume."""
  workdir = tmp_path / "interrupted"
  code, output = run_until(workdir, prepared_fake_data, "Compiled", signal.SIGINT)
  assert code == 0, output
  assert "SIGINT: saving a checkpoint after the current call, then exiting; Ctrl-C again" in output
  saved = re.search(r"SIGINT: saved step (\d+) \((in|end of) epoch (\d)\) to .*To resume, run "
                    r"the same command: (\S+ -m ltpa_jax .*)\n", output)
  assert saved, output
  step = int(saved.group(1))
  epoch, done = divmod(step, 4)  # 4 steps a pass (8, 8, 8 and 6 images); typically 0 < step < 4
  assert step < 16 and saved.group(2, 3) == (("in", str(epoch + 1)) if done else
                                             ("end of", str(epoch))), output
  resumed = subprocess.run(shlex.split(saved.group(4)), cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert f"Resuming {workdir} at step {step} (epoch {epoch + 1})" in resumed.stdout
  assert_same_run(final_state(workdir), uninterrupted)
  history = json.loads((workdir / "history.json").read_text())
  trained = [30] * 4
  trained[epoch] -= 8 * done
  assert [round(h["images_per_second"] * h["epoch_seconds"]) for h in history] == trained


@pytest.mark.slow
def test_sigterm_saves_at_a_step_boundary_exits_zero_and_resumes_exactly(
    prepared_fake_data, tmp_path, x64):
  """Stopped while running 2 steps per call (scans), resumed with one step per call as the
  uninterrupted run: other compiled programs, so the claim is the same maths, in float64 within
  rounding. The resumed process loads every program from the persistent compilation cache (the
  session's, by default: $JAX_COMPILATION_CACHE_DIR) that the earlier processes filled."""
  output = finish(tmp_path / "uninterrupted", prepared_fake_data, float64=True)
  assert "batches [(1, 8), (1, 6)]" in output, output
  workdir = tmp_path / "terminated"
  code, output = run_until(workdir, prepared_fake_data, "Compiled", signal.SIGTERM,
                           "--config.steps_per_call=2", float64=True)
  assert code == 0, output
  assert "batches [(2, 8), (1, 8), (1, 6)]" in output, output
  assert "SIGTERM: saved step" in output and "To resume, run the same command: " \
      f"{sys.executable} -m ltpa_jax --config configs/tiny.py" in output, output
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    assert ckpt.latest_step() < 16
  output = finish(workdir, prepared_fake_data, float64=True)
  assert "Resuming" in output and "batches [(1, 8), (1, 6)]" in output, output
  assert "s (3 of 3 programs from the compilation cache)." in output, output
  (step, leaves, history, _), (step_u, leaves_u, history_u, _) = (
      final_state(workdir), final_state(tmp_path / "uninterrupted"))
  assert step == step_u == 16
  exact.assert_trees_close(leaves, leaves_u, atol=exact.noise_floor(leaves_u))
  exact.assert_trees_close(history, history_u)


@pytest.mark.slow
def test_a_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    fake_dataset, tmp_path, monkeypatch):
  """Epoch 1 trains normally; from epoch 2 the learning rate is absurd (1e30)."""
  schedule = optim.learning_rate_schedule
  monkeypatch.setattr(optim, "learning_rate_schedule", lambda *args: (
      lambda step: jax.numpy.where(step < 3, schedule(*args)(step), 1e30)))
  with pytest.raises(train.NonFiniteLossError, match=r"at step \d+ \(epoch 2, step \d of pass 1\)"
                     r".*last good state"):
    train.train_and_evaluate(fake_dataset, str(tmp_path))
  checkpoint_dir = tmp_path / "checkpoints"
  assert os.listdir(checkpoint_dir) == ["3"]  # epoch 1 (3 steps), nothing after
  history = json.loads((tmp_path / "history.json").read_text())
  assert [h["epoch"] for h in history] == [1] and np.isfinite(history[0]["train_loss"])


def test_a_bad_config_fails_before_any_work(fake_dataset, tmp_path):
  fake_dataset.model.normalisation = "softmaxx"
  with pytest.raises(ValueError, match="config.model.normalisation.*'softmax', 'sigmoid'"):
    train.train_and_evaluate(fake_dataset, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_start_without_its_data_leaves_nothing(tmp_path, caplog, monkeypatch):
  """data_dir an empty folder and no network: one error naming that folder; no workdir, no
  config.json, and no warning about TFDS's version folder (which does not exist)."""
  monkeypatch.setattr(tfds_builders, "_unreachable",
                      lambda urls: f"{urls[0]} is unreachable: no network")
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  config = tiny.get_config()
  config.update(dataset="fashion_mnist", data_dir=str(data_dir))
  with pytest.raises(datasets.DatasetUnavailableError,
                     match=f"^Dataset 'fashion_mnist' is not prepared in data_dir {data_dir} and "
                     "downloading its source files failed"):
    train.train_and_evaluate(config, str(tmp_path / "runs" / "run"))
  assert os.listdir(tmp_path) == ["data"] and not os.listdir(data_dir)
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
