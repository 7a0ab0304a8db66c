"""Training and evaluation speed of a config on synthetic data, with FLOP utilisation.

`run` compiles `steps.train_steps` for one call of `steps` steps (AOT; the compile time is
reported apart, and how many programs came from the compilation cache), runs warm-up calls, then
times `repeats` calls; likewise `steps.evaluate` on `eval_batch_size` images. Data are random
uint8 images made on the device: no dataset is read. On several devices each batch, training
and evaluation, is split over them (`parallel`).
"""

from __future__ import annotations

from importlib import metadata
import math
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax.base import compilation_cache
from ltpa_jax.base import devices
from ltpa_jax.core import optim
from ltpa_jax.core import parallel
from ltpa_jax.core import steps as steps_lib
from ltpa_jax.data import datasets
from ltpa_jax.model import models
from ltpa_jax.model import shapes
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.training import experiment as experiment_lib
from ltpa_jax.training import grid as grid_lib

PACKAGES = ("jax", "jaxlib", "flax", "optax")
TRAIN_FLOPS_NOTE = ("training counted as 3x the forward FLOPs (backward: gradients of the "
                    "activations and of the weights, each ~ the forward)")
FLOPS_NOTE = ("2 FLOPs per multiply-add of convs, dense layers and attention sums; elementwise "
              "ops (BatchNorm, ReLU, pooling, biases, softmax, l + g) not counted")
# Dense (not sparse) peak TFLOP/s of one device by compute dtype, from the vendors' datasheets;
# the first entry whose name is in `device_kind` applies. float32: TF32 tensor cores, which XLA
# uses for float32 convolutions and matmuls on these GPUs at JAX's default precision.
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100 NVL", {"bfloat16": 835.0, "float32": 418.0}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),  # SXM: "NVIDIA H100 80GB HBM3"
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("TPU v4", {"bfloat16": 275.0}),
    ("TPU v5 lite", {"bfloat16": 197.0}),
)


def forward_flops(model: nn.Module, image_shape=(32, 32, 3)) -> int:
  """Forward FLOPs of the model on one image, counted from the shapes each layer sees.

  Traces the model abstractly (nothing is computed): every nn.Conv counts
  2 * H_out * W_out * kh * kw * C_in * C_out / groups, every nn.Dense 2 * C_in * C_out, every
  LinearAttention or GridAttention 2 * H * W * C for the weighted sum of l (and as much again for
  `dp`'s <l, g>); the grid gates' 1x1 convs count as convs.
  """
  total = 0
  for call in shapes.module_calls(model, image_shape):
    module, inputs, out = call.module, call.in_shapes, call.out_shape
    if isinstance(module, nn.Conv):
      total += (2 * math.prod(out[1:-1]) * math.prod(module.kernel_size)
                * inputs[0][-1] * out[-1] // module.feature_group_count)
    elif isinstance(module, nn.Dense):
      total += 2 * inputs[0][-1] * out[-1]
    elif isinstance(module, (models.LinearAttention, models.GridAttention)):
      dp = isinstance(module, models.LinearAttention) and module.compatibility == "dp"
      total += 2 * math.prod(inputs[0][1:]) * (2 if dp else 1)
  return total


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """Dense peak TFLOP/s of one device of this kind for `dtype`; None when unknown."""
  for name, peaks in PEAK_TFLOPS:
    if name in device_kind:
      return peaks.get(dtype)
  return None


def synthetic_examples(rng, n: int, info: datasets.DatasetInfo) -> datasets.Examples:
  """n random uint8 images of the dataset's shape and labels."""
  image_rng, label_rng = jax.random.split(rng)
  images = jax.random.randint(image_rng, (n, *info.image_shape), 0, 256).astype(jnp.uint8)
  labels = jax.random.randint(label_rng, (n,), 0, info.num_classes, jnp.int32)
  return datasets.Examples(images, labels)


def synthetic_dataset(config, steps: int, train_rng, test_rng) -> datasets.Dataset:
  """Random training data for `steps` batches, and one evaluation batch, of the config's
  dataset's shape."""
  info = datasets.dataset_info(config.dataset)
  n = steps * config.batch_size
  return datasets.Dataset(config.dataset, info, f"synthetic {config.dataset}", None, n,
                          synthetic_examples(train_rng, n, info),
                          synthetic_examples(test_rng, config.eval_batch_size, info))


def memory_bytes(compiled) -> dict[str, int] | None:
  """What XLA says a compiled program holds on its device: its arguments, outputs (donated
  arguments alias them) and temporaries, in bytes; None where the backend does not say."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes"))
           for name in ("argument", "output", "alias", "temp")}
  sizes["peak_estimate"] = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
  return sizes


def _time_calls(call, repeats: int, warmup: int, carry=None):
  """Seconds for `repeats` calls `carry = call(carry, i)`, each waited for, after `warmup`."""
  for i in range(warmup):
    carry = jax.block_until_ready(call(carry, i))
  start = time.perf_counter()
  for i in range(warmup, warmup + repeats):
    carry = jax.block_until_ready(call(carry, i))
  return time.perf_counter() - start


def run(config, steps: int, repeats: int = 10, warmup: int = 2, seeds: int = 1,
        seed_layout: str = parallel.AUTO, sweep: grid_lib.Grid | None = None) -> dict:
  """Benchmarks `config`: training calls of `steps` steps, and evaluation; returns the results.

  With `seeds` > 1 or a `sweep` grid, its runs (each grid point with each of `seeds` seeds)
  train together on one device (`parallel.RunAxis` in `seed_layout`), each with its own
  hyperparameters: the program of `sweep` (and of `replicas`) for as many runs, which only
  their number sizes. The images per second count every run's images. Else one run is data
  parallel over every device.
  """
  if steps < 1 or repeats < 1 or warmup < 0 or seeds < 1:
    raise ValueError(f"need steps >= 1, repeats >= 1, warmup >= 0, seeds >= 1; got {steps}, "
                     f"{repeats}, {warmup}, {seeds}")
  run_configs = [c for _, c in grid_lib.runs(config, "", sweep or {}, list(range(seeds)))]
  k = len(run_configs)
  data_rng, eval_rng, order_rng, *run_rngs = jax.random.split(jax.random.key(config.seed), 3 + k)
  layout = parallel.DataParallel() if k == 1 else parallel.RunAxis(k, seed_layout)
  devices.announce("Benchmarking" if k == 1 else f"Benchmarking {k} runs, {layout.describe()},",
                   config.model.dtype, layout.device_count,
                   file=sys.stderr)  # stdout: the JSON alone
  experiment = experiment_lib.build(config, layout.device_count, make_dataset=lambda c: (
      synthetic_dataset(c, steps, data_rng, eval_rng)))
  model, info = experiment.model, experiment.dataset.info
  batch, eval_batch = config.batch_size, config.eval_batch_size
  init = jax.jit(experiment.initial_state)
  state, train_rng = layout.place([(init(init_rng), train_rng) for init_rng, train_rng in (
      jax.random.split(rng) for rng in run_rngs)])
  hparams = layout.place([optim.hyperparameters(c, steps_lib.params_dtype(state.params))
                          for c in run_configs])
  data, eval_data = (layout.share(steps_lib.to_device(split))
                     for split in (experiment.dataset.train, experiment.dataset.test))
  batches = layout.batches([np.asarray(jax.random.permutation(
      order_rng, steps * batch).reshape(steps, batch))] * k)

  with compilation_cache.counting() as cached:
    start = time.perf_counter()
    compiled = experiment.compile_steps(layout, [(steps, batch)], state, data, train_rng,
                                        hparams)[(steps, batch)]
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    eval_fn = experiment.compiled_evaluation(layout, state, eval_data)
    eval_compile_seconds = time.perf_counter() - start

  eval_seconds = _time_calls(lambda _, i: eval_fn(state, eval_data), repeats, warmup)
  train_seconds = _time_calls(  # carry: (state, metrics); the state is donated to each call
      lambda c, i: compiled(c[0], data, batches, train_rng, hparams, np.int32(i * steps)), repeats,
      warmup, (state, None))

  device = jax.devices()[0]
  images_per_second = k * repeats * steps * batch / train_seconds
  flops = forward_flops(model, info.image_shape)
  achieved = 3 * flops * images_per_second / 1e12
  peak = peak_tflops(device.device_kind, config.model.dtype)
  peak = None if peak is None else peak * layout.device_count
  return {
      "config": workdir_lib.config_dict(config),
      "device_kind": device.device_kind,
      "platform": device.platform,
      "device_count": layout.device_count,
      "versions": {p: metadata.version(p) for p in PACKAGES},
      "dtype": config.model.dtype,
      "batch_size": batch,
      "seeds": seeds,
      "sweep": {field: list(values) for field, values in (sweep or {}).items()},
      "runs": k,
      "seed_layout": layout.how if k > 1 else None,
      "steps_per_call": steps,
      "warmup_calls": warmup,
      "timed_calls": repeats,
      "compile_seconds": compile_seconds,
      "programs_from_compilation_cache": f"{cached['hits']} of {cached['requests']}",
      "train_images_per_second": images_per_second,
      "ms_per_step": 1e3 * train_seconds / (repeats * steps),  # a step of every run
      "train_memory_bytes": memory_bytes(compiled),
      "eval_batch_size": eval_batch,
      "eval_compile_seconds": eval_compile_seconds,
      "eval_images_per_second": k * repeats * eval_batch / eval_seconds,
      "forward_flops_per_image": flops,
      "train_flops_per_image": 3 * flops,
      "flops_note": f"{FLOPS_NOTE}; {TRAIN_FLOPS_NOTE}",
      "train_tflops_per_second": achieved,
      "peak_tflops_per_second": peak,  # all devices together; None: device unknown
      "fraction_of_peak": None if peak is None else achieved / peak,
  }
