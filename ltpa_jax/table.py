"""The reference's table in one command: seeds of VGG19 and VGG19-att trained, then reported.

    python -m ltpa_jax.table --workdir runs/table --config.data_dir=../shared/tensorflow_datasets

Trains each config of --configs (names or paths; default: vgg19 and vgg19_att, the recipes of
the reference table's first runs, configs/vgg19.py and configs/vgg19_att.py; `early`, `later` or
`reference` name the reference's groups' configs: `--configs later`) with each of --seeds
(default 0,1,2), the seeds of a config together (`replicas`) in workdir/<config>/seed_<s>/, one
config after another. Then it prints the test errors (mean ± std over seeds, final and best
epoch) beside the PyTorch reference (`report`), and writes them to workdir/table.md.
--config.<field> overrides apply to every config. Every config and its data (prepared, or
prepared now) are checked before any training. A stop saves; the same command resumes, and
reprints a finished table without training.
"""

import os

from absl import flags
from ml_collections import config_flags

from ltpa_jax import cli
from ltpa_jax.analysis import studies
from ltpa_jax.config import defaults as default_config


def define_flags(flag_values: flags.FlagValues):
  config_flags.DEFINE_config_dict("config", default_config.get_config(),
                                  "--config.<field>=value overrides every config, e.g. "
                                  "--config.data_dir=... (docs/config.md lists the fields).",
                                  flag_values=flag_values)
  flag_values["config"].default_as_str = None  # --help: not the whole default config
  flags.DEFINE_list("configs", list(studies.CONFIGS), "Configs (names or files, as --config of "
                    "train.py takes; early, later, reference: the reference's groups' configs), "
                    "each trained with every seed.", flag_values=flag_values)
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Comma-separated seeds.", flag_values=flag_values)
  cli.define_seed_layout_flag(flag_values, "a config's seeds")
  flags.DEFINE_string("workdir", None, "Directory for the runs: <config>/seed_<s>/ each.",
                      flag_values=flag_values)
  flags.mark_flags_as_required(["workdir"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  configs = studies.named_configs(f.configs, config_flags.get_override_values(f["config"]))
  table = studies.train_table(configs, f.workdir, cli.int_list(f["seeds"]), f.seed_layout,
                              call.resume_command)
  if table is not None:
    print(f"\n{table}\n\nWritten to {os.path.join(f.workdir, studies.TABLE_FILE)}.")


if __name__ == "__main__":
  main.run()
