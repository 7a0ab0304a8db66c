"""Markdown table of runs' test errors, mean ± std over seeds per config, beside the reference.

    python -m ltpa_jax.report runs/*
    python -m ltpa_jax.report runs/lr_wd      # a sweep's folder (sweep.json): its own table

Runs are grouped by dataset label and config, less the fields a seed or a data location sets
(`tables`); reduced runs (a narrower model, fewer training examples or epochs than the reference
recipe) get a table of their own. Unfinished runs, results.json files that cannot be read and
paths that are not runs are skipped, one line each on stderr; a run given twice counts once.
Without any finished run: one line, `error: ...`, exit status 2.

A sweep's folder (`sweep`, with sweep.json) gets a table of its own, one row per grid point, and
its figure, sweep.png, remade from its runs' results: the command names the files it wrote.
"""

import sys

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import tables
from ltpa_jax.base import errors
from ltpa_jax.training import grid as grid_lib

RUN_DIRS = "run_dirs: run workdirs (or their results.json), or sweeps' folders, one or more"


def define_flags(flag_values: flags.FlagValues):
  """None of its own: the runs are its arguments."""


@cli.command(define_flags, args=RUN_DIRS)
def main(call: cli.Call):
  if not call.args:
    raise errors.UserError(f"Give the runs: {RUN_DIRS}.")
  sweeps = [path for path in call.args if grid_lib.read(path) is not None]
  for path in sweeps:
    print(tables.write_sweep(path))
  if sweeps and len(sweeps) == len(call.args):
    return
  runs, skipped = tables.collect([path for path in call.args if path not in sweeps])
  if not runs:
    raise errors.UserError("None of the given paths holds a finished run (a workdir with "
                           "results.json). " + " ".join(skipped))
  for line in skipped:
    print(line, file=sys.stderr)
  print(tables.markdown(runs))


if __name__ == "__main__":
  main.run()
