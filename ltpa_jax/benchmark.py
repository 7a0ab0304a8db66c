"""Training and evaluation speed of a config on synthetic data, with FLOP utilisation.

    python -m ltpa_jax.benchmark --config configs/vgg19_att.py --config.model.dtype=bfloat16 \\
        --steps 100 --out bench.json

Compiles `steps.train_steps` for one call of `--steps` steps (AOT; the compile time is reported
apart, and how many programs came from the compilation cache: `--compilation_cache=` measures a
cold compile), runs warm-up calls, then times `--repeats` calls; likewise `steps.evaluate` on
`eval_batch_size` images. Data are random uint8 images made on the device: no dataset is read.
On several devices each batch, training and evaluation, is split over them (`parallel`).
XLA:CPU runs conv weight gradients far slower inside loops: on CPU use `--steps 1`.
"""

import json
import os

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import speed
from ltpa_jax.base import errors
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.training import grid as grid_lib


def define_flags(flag_values: flags.FlagValues):
  cli.define_config_flag(flag_values)
  flags.DEFINE_integer("steps", None, "SGD steps per compiled call (default: the config's "
                       "steps_per_call, or 100 when it is 0). Use 1 on CPU.",
                       flag_values=flag_values)
  flags.DEFINE_integer("repeats", 10, "Timed calls (training and evaluation).",
                       flag_values=flag_values)
  flags.DEFINE_integer("warmup", 2, "Untimed calls before the timed ones.",
                       flag_values=flag_values)
  flags.DEFINE_integer("seeds", 1, "Runs trained together on one device (as `replicas`); "
                       "images/s count them all.", flag_values=flag_values)
  flags.DEFINE_multi_string("sweep", [], "field=v1,v2,...: with --seeds, the runs of a sweep "
                            "(as `sweep`): every grid point with each seed, trained together.",
                            flag_values=flag_values)
  cli.define_seed_layout_flag(flag_values, "several runs")
  flags.DEFINE_string("out", None, "Also write the results to this JSON file (never "
                      "overwritten).", flag_values=flag_values)
  flags.mark_flags_as_required(["config"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  if f.out and os.path.exists(f.out):
    raise errors.UserError(f"--out {f.out} exists; not overwriting it. Choose another path.")
  results = speed.run(f.config, f.steps or f.config.steps_per_call or 100, f.repeats, f.warmup,
                      f.seeds, f.seed_layout, grid_lib.parse(f.sweep))
  print(json.dumps(results, indent=2, sort_keys=True))
  if f.out:
    workdir_lib.write_json(f.out, results)


if __name__ == "__main__":
  main.run()
