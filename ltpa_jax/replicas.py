"""Several seeds of one config trained together, in one compiled step.

    python -m ltpa_jax.replicas --config configs/vgg19_att.py --seeds 0,1,2 --workdir runs/att

Replica i is the run `python -m ltpa_jax` makes with seed seeds[i]: the same keys for its init,
data order and augmentation, its own params, BatchNorm statistics and optimiser state; only the
data arrays are shared. Each seed gets workdir/seed_<s>/ as a run of its own (config.json with
its seed, checkpoints, history.json, TensorBoard, figures, results.json); the same command
resumes them together (`train.train_and_evaluate` with seeds).
"""

from absl import flags

from ltpa_jax import cli
from ltpa_jax.training import loop as train


def define_flags(flag_values: flags.FlagValues):
  cli.define_config_flag(flag_values)
  flags.DEFINE_list("seeds", None, "Comma-separated seeds, one run each, e.g. 0,1,2.",
                    flag_values=flag_values)
  flags.DEFINE_string("workdir", None, "Directory for the runs (seed_<s>/ each).",
                      flag_values=flag_values)
  cli.define_seed_layout_flag(flag_values, "the seeds")
  flags.mark_flags_as_required(["config", "seeds", "workdir"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  train.train_and_evaluate(f.config, f.workdir, seeds=cli.int_list(f["seeds"]),
                           seed_layout=f.seed_layout, resume_command=call.resume_command)


if __name__ == "__main__":
  main.run()
