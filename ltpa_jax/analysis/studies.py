"""Studies trained then reported: the reference's table (seeds of several configs) and a sweep
(a grid of hyperparameters x seeds in one program)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import ml_collections

from ltpa_jax.analysis import reference
from ltpa_jax.analysis import tables
from ltpa_jax.base import errors
from ltpa_jax.config import files as config_files
from ltpa_jax.config import validation as config_validation
from ltpa_jax.core import parallel
from ltpa_jax.data import datasets
from ltpa_jax.rundir import workdir_lock
from ltpa_jax.training import grid as grid_lib
from ltpa_jax.training import loop as train

TABLE_FILE = "table.md"
CONFIGS = reference.SETS["early"]  # configs/vgg19.py, configs/vgg19_att.py, from any folder


def train_table(configs: Mapping[str, ml_collections.ConfigDict], workdir: str,
                seeds: Sequence[int], seed_layout: str = parallel.AUTO,
                resume_command: str | None = None) -> str | None:
  """Trains the seeds of each config (by name) in workdir/<name>/; returns the table's markdown,
  also written to workdir/table.md, or None after a stop."""
  for config in configs.values():  # every config, then its data, before any training
    config_validation.validate(config, 1)
  for config in configs.values():
    datasets.ensure_prepared(config.dataset, config.data_dir, config.manual_dir)
  with workdir_lock.held(workdir):
    for name, config in configs.items():
      if train.train_and_evaluate(config, os.path.join(workdir, name), seeds=seeds,
                                  seed_layout=seed_layout, resume_command=resume_command) is None:
        return None
    runs, _ = tables.collect([os.path.join(workdir, name, f"seed_{seed}")
                              for name in configs for seed in seeds])
    table = tables.markdown(runs)
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:  # made anew from the runs' results
      f.write(table + "\n")
  return table


def named_configs(paths: Sequence[str], overrides: Mapping) -> dict[str, ml_collections.ConfigDict]:
  """{file name without .py: its config with the `overrides` (flat field names)}, for config
  files or names (`config_files.find`); a name of `reference.SETS` ("later") stands for its
  configs."""
  paths = [name for path in paths for name in reference.SETS.get(path, (path,))]
  names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
  if len(set(names)) < len(names):
    raise errors.UserError(f"--configs names two files alike ({', '.join(paths)}): each config "
                           "trains in workdir/<file name>/, so their names must differ.")
  configs = {}
  for name, path in zip(names, paths):
    configs[name] = config_files.load(config_files.find(path))
    configs[name].update_from_flattened_dict(dict(overrides))
  return configs


def train_sweep(config, workdir: str, sweep: grid_lib.Grid, seeds: Sequence[int],
                seed_layout: str = parallel.AUTO, resume_command: str | None = None) -> str | None:
  """Trains every run of the sweep together; returns its table (`tables.sweep_markdown`), also
  in workdir/sweep.md, with workdir/sweep.png; None after a stop."""
  grid_lib.runs(config, workdir, sweep, seeds)  # checks grid and seeds before workdir is touched
  grid_lib.record(workdir, sweep, seeds)
  if train.train_and_evaluate(config, workdir, seeds=seeds, seed_layout=seed_layout,
                              resume_command=resume_command, sweep=sweep) is None:
    return None
  return tables.write_sweep(workdir)
