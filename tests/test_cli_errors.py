"""A user's mistake ends a command with one line on stderr (`error: ...`, naming the fix), exit
status 2 and no traceback, and leaves the workdir as it was. The commands run as processes, on the
fake Fashion-MNIST; most mistakes stop them before anything is compiled."""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import jax
import pytest

from configs import tiny
from ltpa_jax.rundir import checkpoints
from ltpa_jax import cli
from ltpa_jax.training import experiment
from ltpa_jax.rundir import results
from ltpa_jax.rundir import workdir as workdir_lib
from tests import test_checkpoints

REPO = pathlib.Path(__file__).resolve().parents[1]
# Non-partitionable threefry compiles the random init 3x faster on XLA:CPU (the checkpoint case).
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_THREEFRY_PARTITIONABLE": "0"}
FIELDS = {"dataset": "fashion_mnist", "batch_size": 8, "eval_batch_size": 5, "attention_images": 2}
# What a finished run of `make_run` says when run again.
FINISHED = ("{} holds a finished run, not trained again; its recorded results: final test top-1 "
            "error 90.00%, top-5 50.00%; best on test (epoch 1) top-1 90.00%, top-5 50.00% "
            "(fashion_mnist).\n")
STEPS_PER_EPOCH = 4  # 30 training images in batches of 8


def run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=ENV, capture_output=True,
                        text=True, timeout=300)


def train_command(workdir, data_dir, *flags):
  return ("ltpa_jax", "--config", "configs/tiny.py", f"--workdir={workdir}",
          f"--config.data_dir={data_dir}", *(f"--config.{k}={v}" for k, v in FIELDS.items()),
          *flags)


def make_run(workdir, data_dir, attention=True):
  """A workdir as train.py leaves it, for the config of `train_command(..)`; without attention,
  finished (results.json), else stopped at the end of epoch 2 with its checkpoint damaged."""
  config = tiny.get_config()
  config.update(FIELDS, data_dir=data_dir)
  config.model.attention = attention
  workdir_lib.check_same_config(str(workdir), config)
  if not attention:
    history = [{"epoch": 1, "test_top1_error": 90.0, "test_top5_error": 50.0, "test_loss": 2.3}]
    results.write(str(workdir), results.make(config, history, wall_seconds=1.0,
                                             images_per_second=1.0))
    return
  template = experiment.build(config, splits=()).abstract_checkpoint()
  zeros = jax.tree.map(lambda x: jax.numpy.zeros(x.shape, x.dtype), template)
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    for step in (STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH):
      ckpt.save(step, zeros, jax.random.key(0))
  test_checkpoints.damage(workdir / "checkpoints" / str(2 * STEPS_PER_EPOCH))


def snapshot(root):
  return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
          for p in sorted(root.rglob("*"))}


CASES = {  # mistake: (its command, from the workdir and the data_dir; a regex of its message)
    "config file": (
        lambda w, d: ("ltpa_jax", "--config", "configs/vgg91.py", f"--workdir={w}"),
        r"--config=configs/vgg91.py: no config file configs/vgg91\.py .* Give a path or one of: "
        r"cifar10_att, .* tiny, vgg19, vgg19_att, .*, or a run's config\.json\."),
    "field": (
        lambda w, d: train_command(w, d, "--config.learning_rat=0.1"),
        r"unknown config field 'learning_rat'\. Did you mean \"learning_rate\""),
    "value": (
        lambda w, d: train_command(w, d, "--config.model.normalisation=foo"),
        r"config\.model\.normalisation: got 'foo'; allowed: 'softmax', 'sigmoid'"),
    "data folder": (
        lambda w, d: train_command(w, d, f"--config.data_dir={d}s"),
        r"data_dir \S+s does not exist .* Set config\.data_dir to the folder that holds the "
        r"prepared datasets"),
    "checkpoint": (
        lambda w, d: train_command(w, d),
        r"Cannot restore the checkpoint of step 8 \(end of epoch 2\) from (\S+)/checkpoints/8: "
        r".* delete \1/checkpoints/8 to resume from step 4 \(end of epoch 1\)"),
    "not an image file": (
        lambda w, d: ("ltpa_jax.visualize", f"--workdir={w}", "--out=attention.txt"),
        r"attention\.txt is not an image file name: end it in \.png"),
    "run without attention": (
        lambda w, d: ("ltpa_jax.visualize", f"--workdir={w}", "--out=attention.png"),
        r"The run in \S+ has no attention .* configs/vgg19_att\.py"),
}


@pytest.mark.parametrize("mistake", CASES)
def test_a_mistake_is_one_line_and_exit_status_2(mistake, prepared_fake_data, tmp_path):
  workdir = tmp_path / "run"
  make_run(workdir, prepared_fake_data, attention=mistake != "run without attention")
  before = snapshot(workdir)
  command, message = CASES[mistake]
  result = run(*command(workdir, prepared_fake_data))
  assert result.returncode == cli.EXIT_STATUS, result.stdout + result.stderr
  assert "Traceback" not in result.stdout + result.stderr
  assert "Event loop is closed" not in result.stderr  # orbax's reads left in flight: dropped
  # One message, alone on stderr (its lines after the first indented): no library log line
  # (INFO, TFDS's OpenCV notice), no repeat.
  assert re.fullmatch(r"error: .+\n(  .+\n)*", result.stderr), result.stderr
  assert re.search(message, result.stderr), result.stderr
  assert snapshot(workdir) == before


def test_a_refused_workdir_names_the_command_that_resumes_its_run(prepared_fake_data, tmp_path):
  """--config takes a run's config.json: the refusal's command is accepted as it is."""
  workdir = tmp_path / "run"
  make_run(workdir, prepared_fake_data, attention=False)
  before = snapshot(workdir)
  refused = run(*train_command(workdir, prepared_fake_data))
  assert refused.returncode == cli.EXIT_STATUS and "Traceback" not in refused.stderr
  match = re.fullmatch(r"error: Workdir \S+ holds a run of another config \(model\.attention: "
                       r"False -> True\)\. Use a new workdir for this config, or resume that run "
                       r"with its own config: (python -m .*)\n", refused.stderr)
  assert match, refused.stderr
  python, dash_m, *args = shlex.split(match[1])
  resumed = run(*args)
  assert resumed.returncode == 0, resumed.stderr
  assert (resumed.stdout, resumed.stderr) == (FINISHED.format(workdir), "")  # quiet
  assert snapshot(workdir) == before


def test_the_fix_of_lr_boundaries_outside_the_run_is_a_flag_that_works(prepared_fake_data,
                                                                      tmp_path):
  """tiny.py's boundary (epoch 1) lies outside a 1-epoch run: the message names the flag that
  drops it, and the command with that flag runs (here it finds its run finished)."""
  workdir = tmp_path / "run"
  config = tiny.get_config()
  config.update(FIELDS, data_dir=prepared_fake_data, num_epochs=1, lr_boundaries_epochs=())
  workdir_lib.check_same_config(str(workdir), config)
  history = [{"epoch": 1, "test_top1_error": 90.0, "test_top5_error": 50.0, "test_loss": 2.3}]
  results.write(str(workdir), results.make(config, history, wall_seconds=1.0,
                                           images_per_second=1.0))
  command = train_command(workdir, prepared_fake_data, "--config.num_epochs=1")
  refused = run(*command)
  assert refused.returncode == cli.EXIT_STATUS, refused.stderr
  fix = re.search(r"lr_boundaries_epochs: got \(1,\) \(1 outside the run\).*, e\.g\. (.+)\n",
                  refused.stderr)
  assert fix and fix[1] == "'--config.lr_boundaries_epochs=()'", refused.stderr
  fixed = run(*command, *shlex.split(fix[1]))
  assert (fixed.returncode, fixed.stderr) == (0, ""), fixed.stderr
  assert fixed.stdout == FINISHED.format(workdir)


def test_debug_shows_the_traceback(tmp_path):
  result = run("ltpa_jax", "--config", "configs/vgg91.py", f"--workdir={tmp_path}", "--debug")
  assert result.returncode == 1 and "Traceback" in result.stderr
  assert result.stderr.rstrip().endswith("or a run's config.json."), result.stderr


@pytest.mark.parametrize("argv, wanted", [
    (["--debug"], True), (["-v", "1"], True), (["--verbosity=2"], True), (["-v", "0"], False),
    ([], False), (["--nodebug"], False)])
def test_what_asks_for_the_traceback(argv, wanted):
  """Read alone, wherever it stands among flags that may not parse."""
  argv = ["prog", "--config", "configs/nope.py", "--config.learning_rat=0.1", *argv, "x"]
  assert cli._wants_traceback(argv) == wanted  # pylint: disable=protected-access
