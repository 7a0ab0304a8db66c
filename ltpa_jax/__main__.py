"""Trains and evaluates a config: python -m ltpa_jax --config configs/vgg19_att.py --workdir DIR.

In the repository, `python train.py ...` is the same command.

Several processes (hosts): run the same command in each with `--distributed` (and, where the
cluster is not detected automatically, --coordinator_address, --num_processes, --process_id).
"""

import shlex
import sys

from absl import app
from absl import flags
import jax

from ltpa_jax import cli
from ltpa_jax.training import loop as train

# Flags are defined in this module only, which no other module imports (absl refuses a flag
# defined twice).
_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize: train on the devices of every "
    "process, data parallel.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port "
                                   "of process 0 (default: detected from the cluster).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: how many "
                                      "processes (default: detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this process's "
                                   "index (default: detected).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif any(f.value is not None for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)):
    raise app.UsageError("--coordinator_address, --num_processes and --process_id need "
                         "--distributed.")
  resume = shlex.join([sys.executable, "-m", "ltpa_jax", *sys.argv[1:]])
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume_command=resume)


if __name__ == "__main__":
  cli.run(main)
