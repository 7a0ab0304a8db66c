"""Evaluates a PyTorch checkpoint of the reference models on a dataset's test split, in JAX.

    python -m ltpa_jax.evaluate_torch --checkpoint model.pth --config configs/vgg19_att.py \\
        --config.data_dir=../shared/tensorflow_datasets

The checkpoint is a state_dict in the reference or the SaoYan naming (see `torch_interop`), or a
dict holding one under 'state_dict' or 'model'. The config's `model` fields must describe the
checkpoint's model (e.g. vgg19_att.py: sigmoid, one shared u, b2 = 3 convs). A reference VGG19's
unused `projector` and u's are ignored, with a printed note.
"""

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import torch_eval
from ltpa_jax.base import devices
from ltpa_jax.model import torch_interop


def define_flags(flag_values: flags.FlagValues):
  cli.define_config_flag(flag_values)
  flags.DEFINE_string("checkpoint", None, "PyTorch checkpoint (.pth).", flag_values=flag_values)
  flags.DEFINE_enum("scheme", None, torch_interop.SCHEMES,
                    "Naming scheme of the checkpoint; detected when not given.",
                    flag_values=flag_values)
  flags.mark_flags_as_required(["config", "checkpoint"], flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  devices.announce("Evaluating", f.config.model.dtype, 1)
  result = torch_eval.evaluate_checkpoint(f.config, f.checkpoint, f.scheme)
  print(f"{f.checkpoint} on {result['dataset_label']} test ({result['num_examples']} examples): "
        f"top-1 error {result['top1_error']:.2f}%, top-5 error {result['top5_error']:.2f}%, "
        f"loss {result['loss']:.4f}")


if __name__ == "__main__":
  main.run()
