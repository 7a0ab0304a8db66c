"""The tables of finished runs: test errors, mean ± std over seeds per config, beside the
reference; and a sweep's table and figure.

Runs are grouped by dataset label and config, less the fields in NOT_CONFIG (a seed or a data
location does not make another config). The std is the sample std (ddof=1) over the group's
runs; a group of one run has none. Reduced runs (a narrower model, fewer training examples or
epochs than the reference recipe) get a table of their own. `collect` skips unfinished runs,
results.json files that cannot be read and paths that are not runs, one line each, and a run
given twice counts once.

A sweep's folder (`sweep`, with sweep.json) gets a table of its own, one row per grid point
(`sweep_markdown`), and its figure, sweep.png (`plots.save_sweep`), remade from its runs' results.
"""

from __future__ import annotations

import fractions
import json
import os
from typing import Any, Mapping, Sequence

from ltpa_jax.config import defaults as default_config
from ltpa_jax.config import fields
from ltpa_jax.base import errors
from ltpa_jax.training import grid as grid_lib
from ltpa_jax.core import optim
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import results as results_lib
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.analysis import reference
from ltpa_jax.analysis.stats import format_mean_std

NOT_CONFIG = ("seed", "data_dir", "manual_dir")
# Config fields named in the model and recipe columns, not repeated among the differences.
SHOWN = fields.shown()
# Fields named in the reduced runs' `reduced` column.
REDUCED = ("model.width_multiplier", "train_examples")
FULL_EPOCHS = default_config.get_config().num_epochs  # the reference recipe's 100



def group_runs(runs: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
  """Runs grouped by dataset label and config (less NOT_CONFIG), in order of first appearance."""
  groups: dict[str, list] = {}
  for run in runs:
    config = {k: v for k, v in run["config"].items() if k not in NOT_CONFIG}
    key = json.dumps([run["dataset_label"], config], sort_keys=True)
    groups.setdefault(key, []).append(run)
  return list(groups.values())


def model_name(config: Mapping[str, Any]) -> str:
  model = config["model"]
  if not model["attention"]:
    return "VGG19"
  if model["attention_type"] == "grid":
    return f"VGG19-att grid ({model['normalisation']})"
  return f"VGG19-att ({model['normalisation']}, {'shared' if model['shared_u'] else 'separate'} u)"


def recipe(config: Mapping[str, Any]) -> str:
  mantissa, exponent = f"{config['weight_decay']:e}".split("e")
  weight_decay = f"{float(mantissa):g}e{int(exponent)}" if config["weight_decay"] else "0"
  return f"b2 {config['model']['b2_convs']} convs, wd {weight_decay}, {epochs(config)}"


def epochs(config: Mapping[str, Any]) -> str:
  return f"{config['num_epochs']} epoch{'s' * (config['num_epochs'] != 1)}"


def reduction(config: Mapping[str, Any]) -> str | None:
  """How a run is smaller than the reference recipe, e.g. "width 1/16, 640 train examples,
  2 epochs"; None for a full run."""
  width = config["model"].get("width_multiplier", 1.0)
  parts = [f"width {fractions.Fraction(width).limit_denominator(1024)}"] if width < 1 else []
  if config.get("train_examples"):
    parts.append(f"{config['train_examples']} train examples")
  if config["num_epochs"] < FULL_EPOCHS:
    parts.append(epochs(config))
  return ", ".join(parts) or None


# The three kinds of test error in results.json (`results`), labelled apart: never compare one
# kind with another.
ERROR_COLUMNS = ("final top-1", "final top-5", "best-epoch top-1", "its top-5", "best-each top-1",
                 "best-each top-5")
ERRORS_NOTE = ("Test error %, mean ± sample std over seeds. `final`: the last epoch's, the honest "
               "number. `best-epoch`: the epoch of lowest test top-1 error, and that epoch's top-5. "
               "`best-each`: the lowest top-1 and the lowest top-5 over all epochs, each on its "
               "own: the reference's way, what its numbers are (\"-\": a run recorded before "
               "results.json had it). Both bests are picked on the test set (optimistic).")


def _errors(runs: Sequence[Mapping[str, Any]]) -> list[str]:
  """The ERROR_COLUMNS of `runs`: mean ± std over them, "-" where a run lacks a value."""
  column = lambda part, key: format_mean_std([r.get(part, {}).get(key) for r in runs])
  return [column("final", "test_top1_error"), column("final", "test_top5_error"),
          column("best_on_test", "test_top1_error"), column("best_on_test", "test_top5_error"),
          column("best_each_on_test", "test_top1_error"),
          column("best_each_on_test", "test_top5_error")]


def _table(runs: Sequence[Mapping[str, Any]], reduced: bool) -> list[str]:
  """The rows of the runs' groups, under a header; a `reduced` column for reduced runs."""
  groups = group_runs(runs)
  shown = SHOWN + REDUCED if reduced else SHOWN
  flat = [workdir_lib.flatten({k: v for k, v in g[0]["config"].items() if k not in NOT_CONFIG})
          for g in groups]
  differing = sorted(k for k in set().union(*flat)
                     if k not in shown and len({json.dumps(f.get(k)) for f in flat}) > 1)
  extra = ["reduced"] if reduced else []
  lines = [
      "| " + " | ".join(["dataset", *extra, "model", "recipe", "other settings", "n", "seeds",
                         *ERROR_COLUMNS, "images/s", "device"]) + " |",
      "|---" * (8 + len(ERROR_COLUMNS) + len(extra)) + "|",
  ]
  for group, config in zip(groups, flat):
    first = group[0]["config"]
    lines.append("| " + " | ".join([
        group[0]["dataset_label"], *([reduction(first)] if reduced else []), model_name(first),
        recipe(first),
        ", ".join(f"{k}={json.dumps(config.get(k))}" for k in differing) or "-",
        str(len(group)), ", ".join(str(r["seed"]) for r in group), *_errors(group),
        f"{sum(r['images_per_second'] for r in group) / len(group):,.0f}",
        ", ".join(sorted({r["device_kind"] for r in group})),
    ]) + " |")
  return lines


def markdown(runs: Sequence[Mapping[str, Any]]) -> str:
  """The runs' table, the reduced runs' table (if any), then the reference's."""
  full = [r for r in runs if not reduction(r["config"])]
  reduced = [r for r in runs if reduction(r["config"])]
  lines = [
      "## Runs",
      "",
      ERRORS_NOTE,
      "",
  ]
  lines += _table(full, reduced=False) if full else ["No full runs."]
  if reduced:
    lines += [
        "",
        "## Reduced runs",
        "",
        f"Smoke-test sizes (a narrower model, fewer training examples, or under {FULL_EPOCHS} "
        "epochs): not comparable with the reference, and never averaged with full runs.",
        "",
        *_table(reduced, reduced=True),
    ]
  lines += ["", "## PyTorch reference", "",
            "iversonicter/Learn-to-pay-attention's README: CIFAR-100's official test split, 100 "
            "epochs, mean ± sample std over 3 runs.", "", *reference.markdown()]
  return "\n".join(lines)


SWEEP_TABLE, SWEEP_FIGURE = "sweep.md", "sweep.png"


def _sweep_results(workdir: str):
  """(grid, seeds, [the finished runs' results of each grid point], [unfinished run dirs])."""
  recorded = grid_lib.read(workdir)
  if recorded is None:
    raise errors.UserError(f"No {grid_lib.SWEEP_FILE} in {workdir}: give the workdir of a "
                               "sweep (python -m ltpa_jax.sweep --workdir ...).")
  grid, seeds = dict(recorded["sweep"]), recorded["seeds"]
  per_point, unfinished = [], []
  for point in grid_lib.points(grid):
    paths = [grid_lib.run_dir(workdir, point, seed) for seed in seeds]
    runs, _ = collect(paths)
    unfinished += [path for path in paths
                   if not os.path.exists(os.path.join(path, results_lib.RESULTS_FILE))]
    per_point.append(runs)
  return grid, seeds, per_point, unfinished


def sweep_markdown(workdir: str) -> str:
  """The table of the sweep in `workdir`: each grid point's final and best test errors, mean ±
  sample std over its finished seeds; then the runs not finished yet."""
  grid, seeds, per_point, unfinished = _sweep_results(workdir)
  first = next((runs[0] for runs in per_point if runs), None)
  if first is None:
    raise errors.UserError(f"No run of the sweep in {workdir} has finished yet.")
  config = first["config"]
  fixed = ", ".join([first["dataset_label"], model_name(config),
                     reduction(config) or epochs(config),
                     *(f"{field} {config[field]:g}" for field in optim.HYPERPARAMETERS
                       if field not in grid)])
  lines = [f"## Sweep {workdir}", "",
           f"{fixed}; seeds {seeds}. {ERRORS_NOTE}", "",
           "| " + " | ".join([*grid, "n", *ERROR_COLUMNS]) + " |",
           "|---" * (len(grid) + 1 + len(ERROR_COLUMNS)) + "|"]
  for point, runs in zip(grid_lib.points(grid), per_point):
    lines.append("| " + " | ".join([
        *(f"{value:g}" for value in point.values()), str(len(runs)),
        *(_errors(runs) if runs else ["-"] * len(ERROR_COLUMNS)),
    ]) + " |")
  if unfinished:
    lines += ["", f"Not finished ({len(unfinished)}): " + ", ".join(unfinished)]
  return "\n".join(lines)


def write_sweep(workdir: str) -> str:
  """`sweep_markdown`, also written to workdir/sweep.md, and workdir/sweep.png; both made anew
  from the runs' results. Returns the table and the files written, saying if they replaced
  earlier ones."""
  table = sweep_markdown(workdir)
  grid, _, per_point, _ = _sweep_results(workdir)
  errors = [[r["final"]["test_top1_error"] for r in runs] for runs in per_point]
  paths = [os.path.join(workdir, name) for name in (SWEEP_TABLE, SWEEP_FIGURE)]
  replaced = any(os.path.exists(path) for path in paths)
  with open(paths[0], "w") as f:
    f.write(table + "\n")
  plots.save_sweep(grid, errors, paths[1], title=f"{workdir}: final test top-1 error %")
  written = "Rewritten from the runs' results:" if replaced else "Written to"
  return f"{table}\n\n{written} {paths[0]} and {paths[1]}."


def collect(paths: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
  """The results of the finished runs among `paths` (workdirs or results.json files), each run
  once, and one line per path skipped, saying why."""
  runs, skipped, seen = [], [], {}
  for path in paths:
    if os.path.isdir(path):
      results_path = os.path.join(path, results_lib.RESULTS_FILE)
      if not os.path.exists(results_path):
        why = ("unfinished (no results.json yet)"
               if os.path.exists(os.path.join(path, workdir_lib.CONFIG_FILE))
               else "not a run (no config.json)")
        skipped.append(f"Skipped {path}: {why}.")
        continue
    elif path.endswith(".json") and os.path.isfile(path):
      results_path = path
    else:
      why = "not a run (a file)" if os.path.exists(path) else "no such file or folder"
      skipped.append(f"Skipped {path}: {why}.")
      continue
    key = os.path.realpath(results_path)
    if key in seen:
      skipped.append(f"Skipped {path}: the same run as {seen[key]}.")
      continue
    try:
      runs.append(results_lib.read(results_path))
    except errors.UserError as e:
      skipped.append(f"Skipped {path}: {e}")
      continue
    seen[key] = path
  return runs, skipped
