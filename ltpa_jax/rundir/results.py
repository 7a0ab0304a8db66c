"""A run's results.json: its config, final and best test errors, speed and software.

Three kinds of test error, never to be compared with one another:
- `final`: the last epoch's, the honest number;
- `best_on_test`: the epoch of the lowest top-1 error (its top-5 is that epoch's);
- `best_each_on_test`: the lowest top-1 and the lowest top-5 over all epochs, each taken on its
  own, as the PyTorch reference reported its table (main.py at 1b1af30 keeps best_acc and
  best_top5 apart).
"""

from __future__ import annotations

from importlib import metadata
import json
import os
from typing import Any, Mapping, Sequence

import jax

from ltpa_jax.base import errors
from ltpa_jax.rundir import workdir as workdir_lib

RESULTS_FILE = "results.json"
HISTORY_FILE = "history.json"  # beside it: every epoch's numbers (`recorder`)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")
BEST_NOTE = ("epoch of the lowest test top-1 error, chosen ON THE TEST SET as the PyTorch "
             "reference did: optimistic; `final` is the honest number")
BEST_EACH_NOTE = ("the lowest test top-1 error and the lowest test top-5 error over all epochs, "
                  "each taken on its own, ON THE TEST SET: how the PyTorch reference reported "
                  "its table")
METRICS = ("test_top1_error", "test_top5_error", "test_loss")
ERRORS = ("test_top1_error", "test_top5_error")
KEYS = ("config", "seed", "dataset_label", "final", "best_on_test", "images_per_second",
        "device_kind")  # what `read` requires (and `report` shows)


def make(config, history: Sequence[Mapping[str, float]], *, wall_seconds: float,
         images_per_second: float, dataset_label: str | None = None) -> dict[str, Any]:
  """The results of a finished run.

  Args:
    config: the run's config (ConfigDict).
    history: one dict per epoch, with `epoch` and, on evaluated epochs, the METRICS; the last
      epoch must be evaluated.
    wall_seconds: the run's wall time.
    images_per_second: training throughput (training images / training seconds).
    dataset_label: how to name the data in reports, e.g. "CIFAR-100 (re-split)"; default the
      TFDS name.
  """
  evaluated = [h for h in history if all(k in h for k in METRICS)]
  if not history or not all(k in history[-1] for k in METRICS):
    raise ValueError("The history's last epoch has no test metrics: evaluate the final epoch.")
  best = min(evaluated, key=lambda h: (h["test_top1_error"], h["epoch"]))
  pick = lambda h: {"epoch": int(h["epoch"]), **{k: float(h[k]) for k in METRICS}}
  config = workdir_lib.config_dict(config)
  device = jax.devices()[0]
  return {
      "config": config,
      "seed": config["seed"],
      "dataset": config["dataset"],
      "dataset_label": dataset_label or config["dataset"],
      "final": pick(history[-1]),
      "best_on_test": {**pick(best), "note": BEST_NOTE},
      "best_each_on_test": {**best_each(evaluated), "note": BEST_EACH_NOTE},
      "wall_seconds": float(wall_seconds),
      "images_per_second": float(images_per_second),
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
      "versions": {p: metadata.version(p) for p in PACKAGES},
  }


def best_each(evaluated: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """The lowest of each test error over the `evaluated` epochs, and the (first) epoch of each:
  {"test_top1_error": .., "test_top1_epoch": .., "test_top5_error": .., "test_top5_epoch": ..}."""
  best = {}
  for key in ERRORS:
    epoch = min(evaluated, key=lambda h, key=key: (h[key], h["epoch"]))
    best[key] = float(epoch[key])
    best[key.replace("_error", "_epoch")] = int(epoch["epoch"])
  return best


def describe(run_results: Mapping[str, Any]) -> str:
  """A run's final and best-on-test errors and its data, as the lines that end a run say them."""
  final, best = run_results["final"], run_results["best_on_test"]
  return (f"final test top-1 error {final['test_top1_error']:.2f}%, top-5 "
          f"{final['test_top5_error']:.2f}%; best on test (epoch {best['epoch']}) top-1 "
          f"{best['test_top1_error']:.2f}%, top-5 {best['test_top5_error']:.2f}% "
          f"({run_results['dataset_label']})")


def write(workdir: str, results: Mapping[str, Any]) -> str:
  """Writes `workdir/results.json` atomically; raises FileExistsError if it exists."""
  path = os.path.join(workdir, RESULTS_FILE)
  try:
    workdir_lib.write_json(path, results)
  except FileExistsError:
    raise FileExistsError(f"{path} exists: this run already finished. Move it away to write "
                          "new results, or use a new workdir.") from None
  return path


def read(run_dir: str) -> dict[str, Any]:
  """The results of the run in `run_dir` (or of the results.json at that path); UserError
  naming the file if it cannot be read."""
  path = run_dir if run_dir.endswith(".json") else os.path.join(run_dir, RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No {RESULTS_FILE} in {run_dir}: the run is unfinished or not a run.")
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:  # unreadable, truncated, not JSON
    raise errors.UserError(f"{path} cannot be read ({e}).") from e
  missing = [key for key in KEYS if key not in results] if isinstance(results, dict) else KEYS
  if missing:
    raise errors.UserError(f"{path} is not a run's results (it lacks {', '.join(missing)}).")
  results["config"] = workdir_lib.upgraded(results["config"])
  history = os.path.join(os.path.dirname(path), HISTORY_FILE)
  if "best_each_on_test" not in results and os.path.exists(history):  # recorded before it
    with open(history) as f:
      evaluated = [h for h in json.load(f) if all(k in h for k in METRICS)]
    if evaluated:
      results["best_each_on_test"] = {**best_each(evaluated), "note": BEST_EACH_NOTE}
  return results
