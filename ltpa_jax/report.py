"""Markdown table of runs' test errors, mean ± std over seeds per config, beside the reference.

    python -m ltpa_jax.report runs/vgg19_seed0 runs/vgg19_seed1 runs/att_seed0 ...

Runs are grouped by dataset label and config, less the fields in NOT_CONFIG (a seed or a data
location does not make another config). The std is the sample std (ddof=1) over the group's
runs; a group of one run has none.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, Mapping, Sequence

from ltpa_jax import results as results_lib
from ltpa_jax import workdir as workdir_lib

NOT_CONFIG = ("seed", "data_dir", "manual_dir")
# Config fields named in the model and recipe columns, not repeated among the differences.
SHOWN = ("model.attention", "model.normalisation", "model.shared_u", "model.b2_convs",
         "weight_decay", "num_epochs")

# PyTorch reference: CIFAR-100, official test split, 100 epochs; per run (top-1, top-5) error %,
# top-5 None where unreported. Each run reported its best epoch on the test set.
REFERENCE = (
    ("VGG19", "b2 3 convs, wd 1e-4", ((25.89, 7.17), (26.35, 6.93), (26.14, 7.37))),
    ("VGG19-att (sigmoid, shared u)", "b2 3 convs, wd 1e-4",
     ((24.60, 6.32), (24.42, 6.21), (24.57, 6.22))),
    ("VGG19", "b2 2 convs, wd 5e-5", ((26.2, None), (26.84, None), (27.39, None))),
    ("VGG19-att (softmax, separate u)", "b2 2 convs, wd 5e-5",
     ((28.2, None), (27.17, None), (27.29, None))),
    ("VGG19-att (sigmoid, separate u)", "b2 2 convs, wd 5e-5",
     ((25.2, None), (25.94, None), (25.24, None))),
)
# Jetley et al. 2018, CIFAR-100 top-1 error %, 300 epochs, one number each.
PAPER = (("VGG", 30.62), ("VGG-att3-concat-pc", 22.97))


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and sample std (ddof=1) of `values`; the std is None for one value."""
  n = len(values)
  mean = sum(values) / n
  if n == 1:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_mean_std(values: Sequence[float | None]) -> str:
  """"26.13 ± 0.23", "26.13" for one value, "-" when any value is missing."""
  if any(v is None for v in values):
    return "-"
  mean, std = mean_std(values)
  return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


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
  return f"VGG19-att ({model['normalisation']}, {'shared' if model['shared_u'] else 'separate'} u)"


def recipe(config: Mapping[str, Any]) -> str:
  weight_decay = f"{config['weight_decay']:g}".replace("e-0", "e-")  # 5e-5, as the reference
  return (f"b2 {config['model']['b2_convs']} convs, wd {weight_decay}, "
          f"{config['num_epochs']} epochs")


def markdown(runs: Sequence[Mapping[str, Any]]) -> str:
  """The runs' table, then the reference's."""
  groups = group_runs(runs)
  flat = [workdir_lib.flatten({k: v for k, v in g[0]["config"].items() if k not in NOT_CONFIG})
          for g in groups]
  differing = sorted(k for k in set().union(*flat)
                     if k not in SHOWN and len({json.dumps(f.get(k)) for f in flat}) > 1)
  lines = [
      "## Runs",
      "",
      "Test error %, mean ± sample std over seeds. `final`: last epoch. `best`: the epoch of "
      "lowest test top-1 error, picked on the test set as the reference did (optimistic).",
      "",
      "| dataset | model | recipe | other settings | n | seeds | final top-1 | final top-5 "
      "| best top-1 | best top-5 | images/s | device |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for group, config in zip(groups, flat):
    first = group[0]["config"]
    column = lambda part, key: format_mean_std([r[part][key] for r in group])
    lines.append("| " + " | ".join([
        group[0]["dataset_label"], model_name(first), recipe(first),
        ", ".join(f"{k}={json.dumps(config.get(k))}" for k in differing) or "-",
        str(len(group)), ", ".join(str(r["seed"]) for r in group),
        column("final", "test_top1_error"), column("final", "test_top5_error"),
        column("best_on_test", "test_top1_error"), column("best_on_test", "test_top5_error"),
        f"{sum(r['images_per_second'] for r in group) / len(group):,.0f}",
        ", ".join(sorted({r["device_kind"] for r in group})),
    ]) + " |")
  lines += [
      "",
      "## PyTorch reference",
      "",
      "CIFAR-100, official test split (not a re-split), 100 epochs; each run's best epoch on the "
      "test set.",
      "",
      "| model | recipe | n | top-1 | top-5 | runs (top-1/top-5) |",
      "|---|---|---|---|---|---|",
  ]
  for name, settings, errors in REFERENCE:
    top1, top5 = zip(*errors)
    per_run = ", ".join(f"{a:g}" if b is None else f"{a:g}/{b:g}" for a, b in errors)
    lines.append(f"| {name} | {settings} | {len(errors)} | {format_mean_std(top1)} | "
                 f"{format_mean_std(top5)} | {per_run} |")
  for name, error in PAPER:
    lines.append(f"| paper: {name} | 300 epochs | 1 | {error:.2f} | - | {error:g} |")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run_dirs", nargs="+", help="run workdirs (or their results.json)")
  args = parser.parse_args(argv)
  try:
    runs = [results_lib.read(d) for d in args.run_dirs]
  except FileNotFoundError as e:
    parser.error(str(e))
  print(markdown(runs))


if __name__ == "__main__":
  main()
