"""A damaged checkpoint, whatever the damage, ends every command that reads it with its one line
`error: ...` and exit status 2, and nothing after it: no traceback, no report of a thread, future
or coroutine a library left behind (`cli`'s clean exit), no absl E/W line. The run is a copy of
tests/fixtures/run_006ed2a (a tiny run on the fake Fashion-MNIST, checkpoint of step 3); each
command runs as a process, as a user runs it."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RUN = REPO / "tests" / "fixtures" / "run_006ed2a"
STEP = "3"  # the fixture's one checkpoint
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
# What a library prints when it is not silenced: tracebacks, reports of abandoned coroutines and
# futures, absl's E/W/F lines ("E1207 12:00:00.000 ...").
NOISE = re.compile(r"Traceback|Exception ignored|^[EWF]\d{4} ", re.MULTILINE)


def _largest_data_file(checkpoint: pathlib.Path) -> pathlib.Path:
  files = [p for p in checkpoint.rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def _cut_short(path):
  os.truncate(path, path.stat().st_size // 2)


def _overwrite(path):
  path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


DAMAGES = {  # damage: what it does to a checkpoint (JAX: its folder; PyTorch: its .pth file)
    "data file cut short": lambda c: _cut_short(_largest_data_file(c) if c.is_dir() else c),
    "data file deleted": lambda c: (_largest_data_file(c) if c.is_dir() else c).unlink(),
    "data file overwritten": lambda c: _overwrite(_largest_data_file(c) if c.is_dir() else c),
    "metadata file emptied": lambda c: (c / "default" / "_METADATA" if c.is_dir() else c
                                        ).write_bytes(b""),
}
COMMANDS = {  # command: (its arguments for the run and the data, the lines it may print first)
    "train": (lambda run, data: ["ltpa_jax", "--config", f"{run}/config.json",
                                 f"--workdir={run}", f"--config.data_dir={data}"],
              ("Training on ",)),
    "visualize": (lambda run, data: ["ltpa_jax.visualize", f"--workdir={run}",
                                     f"--out={run}/attention.png", f"--data_dir={data}",
                                     "--indices=0,1"], ()),
    "robustness": (lambda run, data: ["ltpa_jax.robustness", f"--workdir={run}",
                                      f"--data_dir={data}", "--epsilons=0,1", "--test_images=4",
                                      f"--out={run}/robustness.png"], ("Attacking on ",)),
    "evaluate_torch": (lambda run, data: ["ltpa_jax.evaluate_torch", f"--checkpoint={run}/run.pth",
                                          "--config", f"{run}/config.json",
                                          f"--config.data_dir={data}"], ("Evaluating on ",)),
}
# The fast tier's case; the whole matrix runs in the full suite.
FAST = ("data file cut short", "train")


def _export_pth(run: pathlib.Path):
  """The run's checkpoint as a reference-named PyTorch state_dict, run/run.pth."""
  pytest.importorskip("torch")
  code = ("import sys\n"
          "from ltpa_jax.model import torch_interop\n"
          "from ltpa_jax.rundir import workdir\n"
          "from ltpa_jax.training import experiment\n"
          "config = workdir.read_run_config(sys.argv[1], sys.argv[2])\n"
          "built = experiment.build(config, splits=())\n"
          "state, _ = built.restore_state(sys.argv[1])\n"
          "variables = {'params': state.params, 'batch_stats': state.batch_stats}\n"
          "torch_interop.save_pth(torch_interop.to_torch(variables, built.model, 'reference'), "
          "sys.argv[1] + '/run.pth')\n")
  subprocess.run([sys.executable, "-c", code, str(run), "/nonexistent"], cwd=REPO, env=ENV,
                 check=True, capture_output=True, timeout=300)


def _case(damage: str, command: str, data_dir: str, tmp_path: pathlib.Path):
  run = tmp_path / "run"
  shutil.copytree(RUN, run)
  if command == "evaluate_torch":
    _export_pth(run)
    DAMAGES[damage](run / "run.pth")
  else:
    DAMAGES[damage](run / "checkpoints" / STEP)
  arguments, own_lines = COMMANDS[command]
  done = subprocess.run([sys.executable, "-m", *arguments(run, data_dir)], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 2, done.stdout + done.stderr
  assert not NOISE.search(done.stdout + done.stderr), done.stdout + done.stderr
  error_lines = done.stderr.splitlines()
  assert len(error_lines) == 1 and error_lines[0].startswith("error: "), done.stderr
  assert all(line.startswith(own_lines) for line in done.stdout.splitlines()), done.stdout
  return error_lines[0]


def test_a_damaged_checkpoint_is_one_line_and_exit_2(prepared_fake_data, tmp_path):
  """The fast tier's case of the matrix below."""
  line = _case(*FAST, prepared_fake_data, tmp_path)
  assert "checkpoint" in line


@pytest.mark.slow
@pytest.mark.parametrize("damage, command", [(d, c) for d in DAMAGES for c in COMMANDS
                                             if (d, c) != FAST])
def test_every_damage_ends_every_command_with_its_one_line(damage, command, prepared_fake_data,
                                                           tmp_path):
  print(_case(damage, command, prepared_fake_data, tmp_path))
