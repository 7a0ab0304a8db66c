"""Trains and evaluates a config: python -m ltpa_jax --config configs/vgg19_att.py --workdir DIR.

In the repository, `python train.py ...` is the same command; installed, `ltpa-train ...`.

Several processes (hosts): run the same command in each with `--distributed` (and, where the
cluster is not detected automatically, --coordinator_address, --num_processes, --process_id).
"""

from absl import flags
import jax

from ltpa_jax import cli
from ltpa_jax.base import errors
from ltpa_jax.training import loop as train


def define_flags(flag_values: flags.FlagValues):
  cli.define_config_flag(flag_values)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.",
                      flag_values=flag_values)
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize: train on the devices "
                    "of every process, data parallel.", flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0 "
                      "(default: detected from the cluster).", flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "With --distributed: how many processes (default: "
                       "detected).", flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "With --distributed: this process's index (default: "
                       "detected).", flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  if f.distributed:
    jax.distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  elif any(v is not None for v in (f.coordinator_address, f.num_processes, f.process_id)):
    raise errors.UserError("--coordinator_address, --num_processes and --process_id need "
                           "--distributed.")
  train.train_and_evaluate(f.config, f.workdir, resume_command=call.resume_command)


if __name__ == "__main__":
  main.run()
