"""A sweep's grid: values of float hyperparameters, times seeds; each run a workdir of its own.

A grid {field: values} of `optim.HYPERPARAMETERS` (fields that leave the program's shapes alone)
names each of its points by its values, e.g. `learning_rate=0.05,weight_decay=0.0001`; run
(point, seed) lives in workdir/<point>/seed_<s>/ with a config.json of its own values. A grid of
no fields is the seeds alone (`replicas`: workdir/seed_<s>/). workdir/sweep.json records the grid
and seeds, for `report` and for the resume of the same sweep.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Mapping, Sequence

from ltpa_jax.base import errors
from ltpa_jax.core import optim
from ltpa_jax.rundir import workdir as workdir_lib

Grid = Mapping[str, Sequence[float]]
SWEEP_FILE = "sweep.json"
VARYING = ", ".join(optim.HYPERPARAMETERS)


def parse(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
  """{field: values} from "field=v1,v2,..." strings (--sweep), checked (`check`)."""
  grid = {}
  for spec in specs:
    field, _, values = spec.partition("=")
    if not values:
      raise errors.UserError(f"--sweep {spec}: give field=v1,v2,..., e.g. learning_rate=0.05,0.1")
    if field in grid:
      raise errors.UserError(f"--sweep {field} is given twice: list all its values in one.")
    try:
      grid[field] = tuple(float(v) for v in values.split(","))
    except ValueError:
      raise errors.UserError(f"--sweep {spec}: the values must be numbers.") from None
  check(grid)
  return grid


def check(grid: Grid):
  """UserError unless every field is one of optim.HYPERPARAMETERS with distinct values."""
  for field, values in grid.items():
    if field not in optim.HYPERPARAMETERS:
      raise errors.UserError(
          f"--sweep {field}: only {VARYING} can vary within one program (seeds: --seeds); train "
          "other values as runs of their own (e.g. python -m ltpa_jax.table --configs ...).")
    if not values or len(set(values)) < len(values):
      raise errors.UserError(f"--sweep {field}: give distinct values, at least one; got "
                             f"{list(values)}")


def points(grid: Grid) -> list[dict[str, float]]:
  """Every combination of the grid's values, the last field varying fastest."""
  return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_name(point: Mapping[str, float]) -> str:
  """The folder of a grid point: "learning_rate=0.05,weight_decay=0.0001" ("" for no field)."""
  return ",".join(f"{field}={float(value)!r}" for field, value in point.items())


def run_dir(workdir: str, point: Mapping[str, float], seed: int) -> str:
  return os.path.join(workdir, point_name(point), f"seed_{seed}")


def runs(config, workdir: str, grid: Grid, seeds: Sequence[int]) -> list:
  """[(run_dir, config)] of every grid point with every seed: the config with its values."""
  check(grid)
  if not seeds or len(set(seeds)) < len(seeds) or min(seeds) < 0:
    raise errors.UserError(f"seeds must be distinct non-negative ints, at least one; got "
                           f"{list(seeds)}")
  made = []
  for point in points(grid):
    for seed in seeds:
      run_config = config.copy_and_resolve_references()
      run_config.update(point)
      run_config.seed = seed
      made.append((run_dir(workdir, point, seed), run_config))
  return made


def describe(grid: Grid, seeds: Sequence[int]) -> str:
  """"seeds [0, 1]", or "seeds [0, 1] x learning_rate [0.05, 0.1] x ..."."""
  return " x ".join([f"seeds {list(seeds)}"]
                    + [f"{field} {[float(v) for v in values]}" for field, values in grid.items()])


def record(workdir: str, grid: Grid, seeds: Sequence[int]):
  """Writes workdir/sweep.json, or checks that the one there records this grid and seeds."""
  recorded = {"sweep": [[field, [float(v) for v in values]] for field, values in grid.items()],
              "seeds": list(seeds)}  # fields in order: their grid's, a JSON object's is sorted
  path = os.path.join(workdir, SWEEP_FILE)
  if not os.path.exists(path):
    workdir_lib.write_json(path, recorded)
  elif read(workdir) != recorded:
    raise errors.UserError(f"{workdir} holds another sweep ({read(workdir)}): use a new "
                           "workdir, or give that sweep's --sweep and --seeds to resume it.")


def read(workdir: str) -> dict | None:
  """workdir/sweep.json ({"sweep": [[field, values], ...], "seeds": [...]}), None if absent."""
  path = os.path.join(workdir, SWEEP_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)
