"""Evaluates a PyTorch checkpoint of the reference models on a dataset's test split, in JAX.

    python -m ltpa_jax.evaluate_torch --checkpoint model.pth --config configs/vgg19_att.py \\
        --config.data_dir=../shared/tensorflow_datasets

The checkpoint is a state_dict in the reference or the SaoYan naming (see `torch_interop`), or a
dict holding one under 'state_dict' or 'model'. The config's `model` fields must describe the
checkpoint's model (e.g. vgg19_att.py: sigmoid, one shared u, b2 = 3 convs). A reference VGG19's
unused `projector` and u's are ignored, with a printed note.
"""

import functools

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections

from ltpa_jax import cli
from ltpa_jax.base import devices
from ltpa_jax.training import experiment as experiment_lib
from ltpa_jax.core import steps
from ltpa_jax.model import torch_interop

_CONFIG = cli.define_config_flag()
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "PyTorch checkpoint (.pth).")
_SCHEME = flags.DEFINE_enum("scheme", None, torch_interop.SCHEMES,
                            "Naming scheme of the checkpoint; detected when not given.")
flags.mark_flags_as_required(["config", "checkpoint"])


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint: str,
                        scheme: str | None = None) -> dict[str, float]:
  """Loss and top-1/top-5 error (%) of the checkpoint on `config.dataset`'s test split, and
  how reports name that data (`dataset_label`)."""
  experiment = experiment_lib.build(config, splits=("test",))
  model, info = experiment.model, experiment.dataset.info
  variables = torch_interop.from_torch(torch_interop.load_pth(checkpoint), model,
                                       info.image_shape[-1], scheme)
  test = steps.to_device(experiment.dataset.test)
  state = steps.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                           variables["batch_stats"], None)
  metrics = jax.device_get(jax.jit(functools.partial(
      steps.evaluate, model, info, config.eval_batch_size))(state, test).compute())
  return {"num_examples": int(test.labels.shape[0]), "loss": float(metrics["loss"]),
          "top1_error": 100 * (1 - float(metrics["accuracy"])),
          "top5_error": 100 * (1 - float(metrics["top5_accuracy"])),
          "dataset_label": experiment.dataset.label}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  print(f"Evaluating on {devices.describe(config.model.dtype, 1)}.", flush=True)
  result = evaluate_checkpoint(config, _CHECKPOINT.value, _SCHEME.value)
  print(f"{_CHECKPOINT.value} on {result['dataset_label']} test "
        f"({result['num_examples']} examples): "
        f"top-1 error {result['top1_error']:.2f}%, top-5 error {result['top5_error']:.2f}%, "
        f"loss {result['loss']:.4f}")


if __name__ == "__main__":
  cli.run(main)
