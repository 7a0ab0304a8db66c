"""How many runs of a config fit together on one device: an estimate before compiling.

Each run of a run axis (`replicas`, `sweep`) holds its own params and momentum (the arguments
of its step; gradients and the new params are the step's temporaries) and the activations its
backward pass keeps; the data arrays are shared:

    per run  = 2 x 4 bytes x params  +  batch_size x ACTIVATION_COPIES x 4 bytes x conv outputs
    shared   = the training and test images and labels on the device
    runs     = (device memory - shared) // per run

`conv outputs` counts the elements every convolution outputs for one image (traced, nothing
computed). ACTIVATION_COPIES is measured: XLA's memory analysis of VGG19-att's compiled training
step (batch 64, float32 and bfloat16 alike, 1 and 2 runs vmapped) holds 3.9 to 4.2 such copies.
docs/sweep.md gives the numbers for VGG19-att on 80 GB and 141 GB GPUs.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax

from ltpa_jax.base import errors
from ltpa_jax.model import shapes

ACTIVATION_COPIES = 4.2
FLOAT_BYTES = 4  # float32 params, momentum and (measured) activations, bfloat16 models' too;
#                 float64 models: 8
GB = 1e9


def conv_outputs(model: nn.Module, image_shape) -> int:
  """Elements every nn.Conv of `model` outputs for one image (traced abstractly)."""
  return sum(math.prod(call.out_shape[1:]) for call in shapes.module_calls(model, image_shape)
             if isinstance(call.module, nn.Conv))


def per_run_bytes(experiment) -> int:
  """The estimate of what one run of `experiment` holds on the device (see above)."""
  params = sum(math.prod(p.shape) for p in jax.tree.leaves(
      experiment.abstract_checkpoint()["state"].params))
  size = 8 if experiment.config.model.dtype == "float64" else FLOAT_BYTES
  activations = conv_outputs(experiment.model, (32, 32, experiment.dataset.info.image_shape[-1]))
  return int(2 * size * params + experiment.config.batch_size * ACTIVATION_COPIES * size
             * activations)


def shared_bytes(experiment) -> int:
  """The data arrays every run shares: training and test images and labels."""
  return sum(x.nbytes for split in (experiment.dataset.train, experiment.dataset.test)
             if split is not None for x in (split.images, split.labels))


def device_bytes(device=None) -> int | None:
  """What the device lets a program hold (JAX's bytes_limit: a GPU's share JAX preallocates);
  None where it does not say (CPU)."""
  stats = (device or jax.devices()[0]).memory_stats()
  return stats.get("bytes_limit") if stats else None


def check_fits(experiment, runs: int, capacity: int | None = None):
  """UserError, before compiling, when `runs` runs of `experiment` need more than `capacity`
  bytes (default: the device's `device_bytes`; unknown: no check), naming how many fit."""
  capacity = device_bytes() if capacity is None else capacity
  if capacity is None:
    return
  each, shared = per_run_bytes(experiment), shared_bytes(experiment)
  largest = max(0, (capacity - shared) // each)
  if runs > largest:
    raise errors.UserError(
        f"{runs} runs need about {(shared + runs * each) / GB:.1f} GB ({each / GB:.2f} GB each, "
        f"{shared / GB:.2f} GB of data shared); the device holds {capacity / GB:.1f} GB: at most "
        f"{largest} runs of this config fit together. Train fewer seeds or grid points at once "
        "(several workdirs), or a smaller batch_size (docs/sweep.md).")
