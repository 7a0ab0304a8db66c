"""Data parallelism: 8 host CPU devices give the one-device result (in a subprocess: the device
count is fixed when JAX starts, and the rest of the suite keeps one device)."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax import parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]

EIGHT_DEVICES = """
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax import datasets, models, optim, parallel, train


class Small(nn.Module):  # the project's conv/BatchNorm block: compiles in seconds, unlike VGG19
  @nn.compact
  def __call__(self, x, train=False):
    x = models.ConvBlock(8, 2, name="block")(x, train)
    return nn.Dense(10)(models.max_pool(x).mean((1, 2))), {}


assert jax.device_count() == 8, jax.devices()
INFO = datasets.DatasetInfo(10, (32, 32, 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
model, tx = Small(), optim.sgd(0.05, 0.9, 5e-4)
state = jax.jit(functools.partial(train.initial_state, model, tx, image_shape=(32, 32, 3)))(
    jax.random.key(0))
rng = np.random.default_rng(0)
data = train.DeviceData(jnp.asarray(rng.integers(0, 256, (96, 32, 32, 3), np.uint8)),
                        jnp.asarray(rng.integers(0, 10, 96).astype(np.int32)))
batches = jnp.asarray(rng.permutation(96).reshape(3, 1, 32).astype(np.int32))
key = jax.random.key(3)

mesh = parallel.make_mesh()
assert mesh.size == 8
shared_state, shared_data = parallel.replicate((state, data), mesh)
assert shared_data.images.sharding.is_fully_replicated
assert len(shared_data.images.sharding.device_set) == 8
steps = functools.partial(train.train_steps, model, tx, INFO)
sharded = jax.jit(parallel.data_parallel(steps, mesh), donate_argnums=0).lower(
    shared_state, shared_data, jax.ShapeDtypeStruct((1, 32), jnp.int32), key,
    np.int32(0)).compile()
# Really split: the first conv sees 32 / 8 = 4 images per device, never the whole batch.
convs = set(re.findall(r"f32\\[(\\d+),32,32,8\\]\\S* convolution\\(", sharded.as_text()))
assert convs == {"4"}, convs
single = train.compile_train_steps(model, tx, INFO, state, data, key, [(1, 32)])[(1, 32)]

one, many = jax.tree.map(jnp.copy, state), shared_state
for i in range(3):
  one, one_metrics, _ = single(one, data, batches[i], key, np.int32(i))
  many, many_metrics, _ = sharded(many, shared_data, batches[i], key, np.int32(i))
  np.testing.assert_allclose(many_metrics.compute()["loss"], one_metrics.compute()["loss"],
                             rtol=1e-5)
assert len(many.params["block"]["conv0"]["kernel"].sharding.device_set) == 8
# Params, optimiser state and BatchNorm running statistics (hence batch statistics over the
# GLOBAL batch of 32, not per device).
for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree.leaves(many)):
  np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
# A batch that does not split over 8 devices runs replicated.
odd = jax.jit(lambda b: parallel.shard_batches(b, mesh))(jnp.zeros((1, 6)))
assert odd.shape == (1, 6)
print("OK")
"""


def test_eight_devices_train_like_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "OK" in result.stdout


def test_one_device_is_left_alone():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == (parallel.AXIS,) and mesh.size == jax.device_count() == 1
  x = jnp.arange(12).reshape(2, 6)
  assert parallel.shard_batches(x, mesh) is x
  assert parallel.shard_batches(x, None) is x
  replicated = parallel.replicate({"x": x}, mesh)["x"]
  assert replicated.sharding.is_fully_replicated
  np.testing.assert_array_equal(replicated, x)
