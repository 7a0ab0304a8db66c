"""A user's mistake ends a command with one line on stderr (`error: ...`, naming the fix), exit
status 2 and no traceback, and leaves the workdir as it was. Mistakes found before any work run
in this process (`main(argv)` raises SystemExit(2)); the others run the commands as processes,
on the fake Fashion-MNIST, where nothing may print after the line."""

import importlib
import os
import pathlib
import re
import shlex
import subprocess
import sys

from absl import flags
import jax
import pytest

from configs import tiny
from ltpa_jax.rundir import checkpoints
from ltpa_jax import cli
from ltpa_jax.base import errors
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


COMMANDS = ("ltpa_jax.__main__", "ltpa_jax.table", "ltpa_jax.sweep", "ltpa_jax.replicas",
            "ltpa_jax.report", "ltpa_jax.visualize", "ltpa_jax.robustness", "ltpa_jax.benchmark",
            "ltpa_jax.evaluate_torch")
CONFIG_FILES = {  # a user's config file: its text
    "syntax error": "def get_config(:\n  pass\n",
    "exception in get_config": ("from ltpa_jax import default_config\n\n\ndef get_config():\n"
                                "  config = default_config.get_config()\n"
                                "  config.learning_rate = 1 / 0\n  return config\n"),
    "no get_config": "CONFIG = {}\n",
}
IN_PROCESS = {  # mistake: (its command, argv from a folder; a regex of its message)
    "config file": (
        "ltpa_jax.__main__", lambda t: ["--config", "configs/vgg91.py", f"--workdir={t}/run"],
        r"--config=configs/vgg91.py: no config file configs/vgg91\.py .* Give a path or one of: "
        r"cifar10_att, .* tiny, vgg19, vgg19_att, .*, or a run's config\.json\."),
    "field": (
        "ltpa_jax.__main__",
        lambda t: ["--config", "tiny", f"--workdir={t}/run", "--config.learning_rat=0.1"],
        r"unknown config field 'learning_rat'\. Did you mean \"learning_rate\""),
    "syntax error": (
        "ltpa_jax.__main__", lambda t: ["--config", f"{t}/syntax_error.py", f"--workdir={t}/run"],
        r"error: \S+/syntax_error\.py, line 1: SyntaxError: invalid syntax\n"),
    "exception in get_config": (
        "ltpa_jax.table", lambda t: [f"--configs={t}/exception_in_get_config.py",
                                     f"--workdir={t}/run"],
        r"error: \S+/exception_in_get_config\.py, line 6: ZeroDivisionError: division by zero\n"),
    "no get_config": (
        "ltpa_jax.sweep", lambda t: ["--config", f"{t}/no_get_config.py", f"--workdir={t}/run",
                                     "--sweep=learning_rate=0.1"],
        r"error: \S+/no_get_config\.py defines no get_config\(\): .*configs/tiny\.py\)\.\n"),
    "unexpected argument": (
        "ltpa_jax.replicas", lambda t: ["--config=tiny", "--seeds=0", f"--workdir={t}/run", "x"],
        r"Unexpected arguments: \['x'\]"),
    "missing flag": (
        "ltpa_jax.robustness", lambda t: [], r"Flag --workdir must have a value other than None"),
    "no run": ("ltpa_jax.report", lambda t: [], r"Give the runs: run_dirs: "),
    "bad int list": (
        "ltpa_jax.table", lambda t: [f"--workdir={t}/run", "--seeds=0,one"],
        r"--seeds must be comma-separated ints, got 0,one"),
}
CASES = {  # mistake: (its command, from the workdir and the data_dir; a regex of its message)
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


@pytest.mark.slow
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


def _write_config_files(folder):
  for name, text in CONFIG_FILES.items():
    (folder / f"{name.replace(' ', '_')}.py").write_text(text)


@pytest.mark.parametrize("mistake", IN_PROCESS)
def test_a_mistake_found_before_any_work_is_one_line_and_exit_status_2_in_process(
    mistake, tmp_path, capsys):
  _write_config_files(tmp_path)
  module, argv, message = IN_PROCESS[mistake]
  with pytest.raises(SystemExit) as exit_:
    importlib.import_module(module).main(argv(tmp_path))
  out, err = capsys.readouterr()
  assert (exit_.value.code, out) == (cli.EXIT_STATUS, "")
  assert re.fullmatch(r"error: .+\n", err) and re.search(message, err), err
  assert not (tmp_path / "run").exists()


def test_a_config_file_mistake_with_debug_raises_from_its_own_error(tmp_path):
  """--debug: the traceback, the config file's own error behind the line's."""
  _write_config_files(tmp_path)
  with pytest.raises(errors.UserError, match=r"line 1: SyntaxError") as raised:
    importlib.import_module("ltpa_jax.__main__").main(
        ["--config", f"{tmp_path}/syntax_error.py", f"--workdir={tmp_path}/run", "--debug"])
  assert isinstance(raised.value.__cause__, SyntaxError)


def test_commands_define_no_flags_on_absl_and_each_help_exits_0(monkeypatch, capsys):
  """Imported together, afresh, the commands define nothing on absl's FLAGS (absl refuses a flag
  defined twice); each one's --help, in this process, shows its docstring and flags, exit 0."""
  for name in COMMANDS:
    monkeypatch.delitem(sys.modules, name, raising=False)
  before = set(flags.FLAGS)
  modules = [importlib.import_module(name) for name in COMMANDS]
  assert set(flags.FLAGS) == before
  for module in modules:
    with pytest.raises(SystemExit) as exit_:
      module.main(["-h" if module.__name__.endswith("table") else "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(module.__doc__.strip()) and "--[no]debug" in out, out
  assert set(flags.FLAGS) == before


def test_the_resume_command_gives_each_flag_once_with_its_last_value():
  """A repeatable flag (--sweep) keeps each value; any other its last, where it came first."""
  own = cli.flag_values_of(importlib.import_module("ltpa_jax.sweep").define_flags)
  argv = ["--config", "tiny", "--workdir=a", "--seeds", "0", "--sweep", "learning_rate=0.1",
          "--config.batch_size=8", "--workdir", "b", "--sweep=momentum=0.9", "--seeds=1",
          "--config.batch_size=4", "--nodebug", "-v", "0"]
  assert cli.resume_command("ltpa_jax.sweep", own, argv) == shlex.join([
      sys.executable, "-m", "ltpa_jax.sweep", "--config", "tiny", "--workdir", "b", "--seeds=1",
      "--sweep", "learning_rate=0.1", "--sweep=momentum=0.9", "--config.batch_size=4",
      "--nodebug", "-v", "0"])


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
