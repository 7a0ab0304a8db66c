"""A hyperparameter sweep trained in one program: a grid of float hyperparameters x seeds.

    python -m ltpa_jax.sweep --config configs/vgg19_att.py --workdir runs/lr_wd \\
        --sweep learning_rate=0.05,0.1,0.2 --sweep weight_decay=1e-4,5e-4 --seeds 0,1

Every run of the grid (here 3 x 2 points x 2 seeds = 12) trains together in one compiled
program, on one device (`parallel.RunAxis`): the fields that can vary (`optim.HYPERPARAMETERS`:
learning_rate, weight_decay, momentum, lr_decay) are values the step takes, not constants of the
program. Any other field given to --sweep is refused with one line naming the fields that can
vary (train other values as runs of their own, e.g. with `table`). Run (point, seed) lives in
workdir/<point>/seed_<s>/, e.g. runs/lr_wd/learning_rate=0.05,weight_decay=0.0001/seed_0/, an
ordinary run whose config.json records its own values (`report`, `visualize`, `robustness` and
`python -m ltpa_jax --config <run>/config.json --workdir <run>` treat it like any other).

A stop saves every run; the same command resumes them, and reprints a finished sweep without
training. At the end it prints the sweep's table (`tables.sweep_markdown`: each grid point's
final and best test errors, mean ± std over seeds), writes it to workdir/sweep.md and plots
workdir/sweep.png (`plots.sweep`). Runs past what the device's memory holds are refused before
compiling, naming the largest count that fits (`memory`).
"""

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import studies
from ltpa_jax.training import grid as grid_lib


def define_flags(flag_values: flags.FlagValues):
  cli.define_config_flag(flag_values)
  flags.DEFINE_multi_string(
      "sweep", None, f"field=v1,v2,...: values of one field, repeated for each swept field; the "
      f"grid is every combination. Only {grid_lib.VARYING} can vary in one program: any other "
      "field is refused (train its values as runs of their own, e.g. with ltpa_jax.table).",
      flag_values=flag_values)
  flags.DEFINE_list("seeds", None, "Comma-separated seeds, each grid point trained with each "
                    "(default: the config's seed).", flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "Directory of the sweep: <grid point>/seed_<s>/ each run, "
                      "sweep.json, sweep.md, sweep.png.", flag_values=flag_values)
  cli.define_seed_layout_flag(flag_values, "the runs")
  flags.mark_flags_as_required(["config", "sweep", "workdir"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  seeds = cli.int_list(f["seeds"]) if f.seeds else [f.config.seed]
  table = studies.train_sweep(f.config, f.workdir, grid_lib.parse(f.sweep), seeds,
                              f.seed_layout, call.resume_command)
  if table is not None:
    print(f"\n{table}")


if __name__ == "__main__":
  main.run()
