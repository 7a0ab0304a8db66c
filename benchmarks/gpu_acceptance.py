"""The acceptance run of the GPU queue's job 1 (benchmarks/job1.py's last stage).

    python benchmarks/gpu_acceptance.py --out $OUT --data_dir DIR            # on the GPU
    python benchmarks/gpu_acceptance.py --out /tmp/acc --data_dir DIR --dry_run   # on CPU

1. Trains the README's main command (configs/vgg19_att.py, bfloat16) and sends it a SIGTERM once
   `--epochs` epochs are logged, i.e. early in the next epoch; the run saves and prints how to
   resume.
2. Runs the printed resume command and sends it a SIGTERM once it has logged one more epoch:
   the resumed epoch finished, and the compile line says how many programs came from the
   compilation cache.
3. Exports the run's last checkpoint to a seed-named PyTorch file (`<config>_seed<s>.pth`,
   reference naming) and evaluates that file with `python -m ltpa_jax.evaluate_torch`, beside
   the run's own evaluation of the same state.

`acceptance.json` and `acceptance.log` in `--out` are written anew after each stage, so a call
cut short still returns what it measured. `--dry_run`: the tiny config on a few hundred images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRY_RUN_FLAGS = ["--config.train_examples=256", "--config.num_epochs=6",
                 "--config.lr_boundaries_epochs=(4,)", "--config.eval_batch_size=128",
                 "--config.batch_size=32"]
RESUME = re.compile(r"To resume, run the same command: (.*)$")
EPOCH = re.compile(r"^(?:seed \d+ )?epoch (\d+)/")


class Log:
  """acceptance.log (every child's output, prefixed by its stage) and acceptance.json."""

  def __init__(self, out: str):
    self.out, self.summary = out, {"stages": {}}
    self._file = open(os.path.join(out, "acceptance.log"), "a", buffering=1)

  def line(self, stage: str, text: str) -> None:
    self._file.write(f"[{stage} {time.strftime('%H:%M:%S')}] {text}\n")
    print(f"[{stage}] {text}", flush=True)

  def record(self, stage: str, **values) -> None:
    self.summary["stages"].setdefault(stage, {}).update(values)
    with open(os.path.join(self.out, "acceptance.json"), "w") as f:
      json.dump(self.summary, f, indent=2)


def watch(log: Log, stage: str, command: list[str], stop_after_epochs: int,
          timeout_s: float) -> dict:
  """Runs `command`, logging its output; sends SIGTERM once it has logged `stop_after_epochs`
  epochs. Returns its exit status, the epochs it logged, its compile line and resume command."""
  log.line(stage, "$ " + shlex.join(command))
  start = time.perf_counter()
  child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
  seen = {"epochs": [], "compile": None, "resume": None, "first_line": None, "sigterm_at": None}
  for text in child.stdout:
    text = text.rstrip("\n")
    log.line(stage, text)
    seen["first_line"] = seen["first_line"] or text
    if text.startswith("Compiled"):
      seen["compile"] = text
    if match := EPOCH.match(text):
      seen["epochs"].append(int(match.group(1)))
      if len(seen["epochs"]) == stop_after_epochs and seen["sigterm_at"] is None:
        child.send_signal(signal.SIGTERM)
        seen["sigterm_at"] = round(time.perf_counter() - start, 1)
        log.line(stage, f"sent SIGTERM after epoch {seen['epochs'][-1]}")
    if match := RESUME.search(text):
      seen["resume"] = match.group(1)
    if time.perf_counter() - start > timeout_s:
      child.kill()
      log.line(stage, f"killed after {timeout_s:.0f} s")
  seen["exit_status"] = child.wait()
  seen["wall_seconds"] = round(time.perf_counter() - start, 1)
  return seen


def epochs_of(workdir: str) -> list[dict]:
  """The run's history.json (one dict per epoch), or [] where there is none."""
  path = os.path.join(workdir, "history.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def export_pth(workdir: str, path: str) -> None:
  """Writes the run's latest checkpoint as a PyTorch state_dict (reference naming), built from
  the run's recorded config.json, in a child process (the run's JAX memory is its own)."""
  code = (
      "import sys\n"
      "from ltpa_jax.model import torch_interop\n"
      "from ltpa_jax.rundir import workdir\n"
      "from ltpa_jax.training import experiment as experiment_lib\n"
      "config = workdir.read_run_config(sys.argv[1])\n"
      "experiment = experiment_lib.build(config, splits=())\n"
      "state, _ = experiment.restore_state(sys.argv[1])\n"
      "variables = {'params': state.params, 'batch_stats': state.batch_stats}\n"
      "torch_interop.save_pth(torch_interop.to_torch(variables, experiment.model, 'reference'),"
      " sys.argv[2])\n")
  subprocess.run([sys.executable, "-c", code, workdir, path], cwd=REPO, check=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for acceptance.json and .log")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir holding CIFAR-100")
  parser.add_argument("--epochs", type=int, default=3, help="epochs before the first SIGTERM")
  parser.add_argument("--dry_run", action="store_true", help="tiny config, for CPU")
  args = parser.parse_args()
  start = time.perf_counter()
  os.makedirs(args.out, exist_ok=True)
  log = Log(args.out)
  config = "configs/tiny.py" if args.dry_run else "configs/vgg19_att.py"
  config_args = ["--config", config, "--config.model.dtype=bfloat16",
                 f"--config.data_dir={args.data_dir}", *(DRY_RUN_FLAGS if args.dry_run else [])]
  workdir = tempfile.mkdtemp(prefix="acceptance_")
  log.record("setup", config=config_args, workdir=workdir)

  first = watch(log, "train", [sys.executable, "train.py", "--workdir", workdir, *config_args],
                args.epochs, timeout_s=300)
  log.record("train", **first, history=epochs_of(workdir))
  if not first["resume"]:
    log.line("train", "no resume command printed: stopping here")
    return
  resumed = watch(log, "resume", shlex.split(first["resume"]), 1, timeout_s=200)
  log.record("resume", **resumed, history=epochs_of(workdir))

  pth = os.path.join(workdir, f"{os.path.basename(config)[:-3]}_seed0.pth")
  export_pth(workdir, pth)
  evaluated = subprocess.run(
      [sys.executable, "-m", "ltpa_jax.evaluate_torch", "--checkpoint", pth, *config_args],
      cwd=REPO, capture_output=True, text=True)
  for text in (evaluated.stdout + evaluated.stderr).splitlines():
    log.line("evaluate_torch", text)
  history = epochs_of(workdir)
  log.record("evaluate_torch", exit_status=evaluated.returncode, output=evaluated.stdout.strip(),
             run_epoch=history[-1]["epoch"] if history else None,
             run_test_top1_error=history[-1].get("test_top1_error") if history else None)

  log.line("done", f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
  main()
