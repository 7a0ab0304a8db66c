"""The reference's table in one command: seeds of VGG19 and VGG19-att trained, then reported.

    python -m ltpa_jax.table --workdir runs/table --config.data_dir=../shared/tensorflow_datasets

Trains each config of --configs (names or paths; default: vgg19 and vgg19_att, the recipes of
the reference table's runs, configs/vgg19.py and configs/vgg19_att.py) with each of --seeds
(default 0,1,2), the seeds of a config together (`replicas`) in workdir/<config>/seed_<s>/, one
config after another. Then it prints the test errors (mean ± std over seeds, final and best
epoch) beside the PyTorch reference (`report`), and writes them to workdir/table.md.
--config.<field> overrides apply to every config. Every config and its data (prepared, or
prepared now) are checked before any training. A stop saves; the same command resumes, and
reprints a finished table without training.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Mapping, Sequence

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from ltpa_jax import cli
from ltpa_jax.config import validation as config_validation
from ltpa_jax.data import datasets
from ltpa_jax.config import defaults as default_config
from ltpa_jax.base import errors
from ltpa_jax.core import parallel
from ltpa_jax import report
from ltpa_jax.training import loop as train
from ltpa_jax.rundir import workdir_lock

TABLE_FILE = "table.md"
CONFIGS = ("vgg19", "vgg19_att")  # configs/vgg19.py, configs/vgg19_att.py, from any folder


def train_table(configs: Mapping[str, ml_collections.ConfigDict], workdir: str,
                seeds: Sequence[int], seed_layout: str = "vmap",
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
    runs, _ = report.collect([os.path.join(workdir, name, f"seed_{seed}")
                              for name in configs for seed in seeds])
    table = report.markdown(runs)
    with open(os.path.join(workdir, TABLE_FILE), "w") as f:  # made anew from the runs' results
      f.write(table + "\n")
  return table


def named_configs(paths: Sequence[str], overrides: Mapping) -> dict[str, ml_collections.ConfigDict]:
  """{file name without .py: its config with the `overrides` (flat field names)}, for config
  files or names (`default_config.find`)."""
  names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
  if len(set(names)) < len(names):
    raise errors.UserError(f"--configs names two files alike ({', '.join(paths)}): each config "
                           "trains in workdir/<file name>/, so their names must differ.")
  configs = {}
  for name, path in zip(names, paths):
    configs[name] = default_config.from_file(path)
    configs[name].update_from_flattened_dict(dict(overrides))
  return configs


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  configs = named_configs(FLAGS.configs, config_flags.get_override_values(FLAGS["config"]))
  resume = shlex.join([sys.executable, "-m", "ltpa_jax.table", *sys.argv[1:]])
  table = train_table(configs, FLAGS.workdir, cli.int_list(FLAGS["seeds"]), FLAGS.seed_layout,
                      resume)
  if table is not None:
    print(f"\n{table}\n\nWritten to {os.path.join(FLAGS.workdir, TABLE_FILE)}.")


if __name__ == "__main__":  # flags defined here only: importing this module defines none
  FLAGS = flags.FLAGS
  config_flags.DEFINE_config_dict("config", default_config.get_config(),
                                  "--config.<field>=value overrides every config, e.g. "
                                  "--config.data_dir=... (configs/default.py lists the fields).")
  FLAGS["config"].default_as_str = None  # --help: not the whole default config
  flags.DEFINE_list("configs", list(CONFIGS), "Configs (names or files, as --config of "
                    "train.py takes), each trained with every seed.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Comma-separated seeds.")
  flags.DEFINE_enum("seed_layout", "vmap", parallel.SEED_LAYOUTS, "How a config's seeds run "
                    "together (see replicas).")
  flags.DEFINE_string("workdir", None, "Directory for the runs: <config>/seed_<s>/ each.")
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
