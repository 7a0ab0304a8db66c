"""Data parallelism: 8 host CPU devices give the one-device result (in a subprocess: the device
count is fixed when JAX starts, and the rest of the suite keeps one device).

Split batches reduce in another order than whole ones: the same maths in other programs, so
the comparisons run in float64 (JAX_ENABLE_X64, float64 models) within float64 rounding.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax.core import parallel
from tests import exact

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Not compared: timings, and which start of a run trained an epoch.
TIMING = ("images_per_second", "epoch_seconds", "wall_seconds", "start")

EIGHT_DEVICES = """
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax.data import datasets
from ltpa_jax.model import models
from ltpa_jax.core import optim
from ltpa_jax.core import parallel
from ltpa_jax.core import steps
from tests import exact


class Small(nn.Module):  # the project's conv/BatchNorm block: compiles in seconds, unlike VGG19
  @nn.compact
  def __call__(self, x, train=False):
    x = models.ConvBlock(8, 2, dtype=jnp.float64, name="block")(x, train)
    return nn.Dense(10, dtype=jnp.float64, param_dtype=jnp.float64)(
        models.max_pool(x).mean((1, 2))), {}


assert jax.device_count() == 8 and jax.config.jax_enable_x64, jax.devices()
INFO = datasets.DatasetInfo(10, (32, 32, 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
model, tx = Small(), optim.sgd(0.05, 0.9, 5e-4)
state = jax.jit(functools.partial(steps.initial_state, model, tx, image_shape=(32, 32, 3)))(
    jax.random.key(0))
rng = np.random.default_rng(0)
data = datasets.Examples(jnp.asarray(rng.integers(0, 256, (96, 32, 32, 3), np.uint8)),
                         jnp.asarray(rng.integers(0, 10, 96).astype(np.int32)))
batches = jnp.asarray(rng.permutation(96).reshape(3, 1, 32).astype(np.int32))
key = jax.random.key(3)

mesh = parallel.make_mesh()
assert mesh.size == 8
shared_state, shared_data = parallel.replicate((state, data), mesh)
assert shared_data.images.sharding.is_fully_replicated
assert len(shared_data.images.sharding.device_set) == 8
train_steps = functools.partial(steps.train_steps, model, tx, INFO)
sharded = jax.jit(parallel.data_parallel(train_steps, mesh), donate_argnums=0).lower(
    shared_state, shared_data, jax.ShapeDtypeStruct((1, 32), jnp.int32), key,
    np.int32(0)).compile()
# Really split: the first conv sees 32 / 8 = 4 images per device, never the whole batch.
convs = set(re.findall(r"f64\\[(\\d+),32,32,8\\]\\S* convolution\\(", sharded.as_text()))
assert convs == {"4"}, convs
single = jax.jit(train_steps, donate_argnums=0)

one, many = jax.tree.map(jnp.copy, state), shared_state
for i in range(3):
  one, one_metrics, _ = single(one, data, batches[i], key, np.int32(i))
  many, many_metrics, _ = sharded(many, shared_data, batches[i], key, np.int32(i))
  exact.assert_trees_close(many_metrics.compute(), one_metrics.compute())
assert len(many.params["block"]["conv0"]["kernel"].sharding.device_set) == 8
# Params, optimiser state and BatchNorm running statistics (hence batch statistics over the
# GLOBAL batch of 32, not per device).
exact.assert_trees_close(many, one, atol=exact.noise_floor(one))
# A batch that does not split over 8 devices runs replicated.
odd = jax.jit(lambda b: parallel.shard_batches(b, mesh))(jnp.zeros((1, 6)))
assert odd.shape == (1, 6)
print("OK")
"""


@pytest.mark.slow
def test_eight_devices_train_like_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", PYTHONPATH=str(ROOT))
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


def test_the_default_seed_layout_loops_on_cpu_and_vmaps_elsewhere():
  assert parallel.seed_layout(parallel.AUTO, "cpu") == "loop"
  assert parallel.seed_layout(parallel.AUTO, "gpu") == "vmap"
  assert parallel.seed_layout(parallel.AUTO, "tpu") == "vmap"
  assert parallel.seed_layout("vmap", "cpu") == "vmap"
  with pytest.raises(ValueError, match="one of auto, vmap, loop; got 'scan'"):
    parallel.seed_layout("scan")
  chosen = parallel.RunAxis(2)  # the tests run on CPU
  assert chosen.how == "loop"
  assert chosen.describe() == "looped (the default on cpu; --seed_layout=vmap batches them)"
  assert parallel.RunAxis(2, "vmap").describe() == "vmapped"


# The most a phase of the two-process test may take: the whole test took up to 541 s with both
# cores busy (two fresh-clone .ci/run at once), its three phases together.
PROCESS_SECONDS = 1200
# train.py, sending itself SIGTERM once its STOP_AT-th SGD step has run (stopping.wait follows
# each step): where a run stops does not hang on how fast its processes run.
STOP_AT = 6
TRAIN_THEN_SIGTERM = f"""
import runpy
import signal

from ltpa_jax.base import stopping

wait, steps = stopping.wait, []


def wait_then_stop(tree):
  result = wait(tree)
  steps.append(None)
  if len(steps) == {STOP_AT}:
    signal.raise_signal(signal.SIGTERM)  # its handler runs before this returns
  return result


stopping.wait = wait_then_stop
runpy.run_module("ltpa_jax", run_name="__main__", alter_sys=True)
"""


@pytest.fixture
def coordinator_port():
  """A port for the coordinator of `train.py --distributed`, bound here on every address with
  SO_REUSEPORT, never listening, for the whole test: no other socket can be given it, while the
  coordinator (gRPC, which sets SO_REUSEPORT too) binds it. A port found free and closed could be
  taken by another process before the coordinator binds it."""
  dual = socket.has_dualstack_ipv6()
  with socket.socket(socket.AF_INET6 if dual else socket.AF_INET, socket.SOCK_STREAM) as s:
    if dual:
      s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("::" if dual else "0.0.0.0", 0))
    yield s.getsockname()[1]


def _train(workdir, data_dir, devices: int, *flags: str, stop: bool = False) -> subprocess.Popen:
  """train.py, tiny config in float64, 4 epochs of 4 steps on the fake Fashion-MNIST, on
  `devices` CPU devices; with `stop`, SIGTERM after step STOP_AT."""
  program = ["-c", TRAIN_THEN_SIGTERM] if stop else ["train.py"]
  command = [sys.executable, *program, "--config", "configs/tiny.py", "--workdir", str(workdir),
             "--config.dataset=fashion_mnist", f"--config.data_dir={data_dir}",
             "--config.batch_size=8", "--config.eval_batch_size=4", "--config.num_epochs=4",
             "--config.lr_boundaries_epochs=(2,)", "--config.learning_rate=0.01",
             "--config.attention_images=2", "--config.model.dtype=float64", *flags]
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", PYTHONUNBUFFERED="1")
  return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _two_processes(workdir, data_dir, port: int, *flags: str,
                   stop_second: bool = False) -> list[subprocess.Popen]:
  """train.py --distributed as 2 processes of 2 CPU devices each (gloo collectives), the
  coordinator on `port`; with `stop_second`, process 1 alone receives SIGTERM after step
  STOP_AT."""
  return [_train(workdir, data_dir, 2, "--distributed", f"--coordinator_address=localhost:{port}",
                 "--num_processes=2", f"--process_id={i}", *flags, stop=stop_second and i == 1)
          for i in range(2)]


def _history(workdir):
  history = json.loads((workdir / "history.json").read_text())
  return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@pytest.mark.slow
def test_two_processes_stop_together_resume_and_train_like_one_device(prepared_fake_data,
                                                                      tmp_path, coordinator_port):
  """`train.py --distributed`, 2 processes x 2 devices: SIGTERM to process 1 alone (after its
  step 6) stops both at that step with a checkpoint; rerun, they resume and end where one device
  ends. Process 0 alone prints progress and writes the run's files; another config is refused by
  both."""
  single = _train(tmp_path / "single", prepared_fake_data, 1)
  first, second = _two_processes(tmp_path / "multi", prepared_fake_data, coordinator_port,
                                 stop_second=True)
  output, second_output = (p.communicate(timeout=PROCESS_SECONDS)[0] for p in (first, second))
  assert first.returncode == 0 and second.returncode == 0, output + second_output
  assert (f"Stopped by another process: saved step {STOP_AT} (in epoch 2) to {tmp_path / 'multi'}"
          in output and "epoch 1/4" in output and "epoch 2/4" not in output), output
  assert "epoch" not in second_output and "SIGTERM" not in second_output, second_output

  resumed = _two_processes(tmp_path / "multi", prepared_fake_data, coordinator_port)
  outputs = [p.communicate(timeout=PROCESS_SECONDS)[0] for p in [single, *resumed]]
  for p, out in zip([single, *resumed], outputs):
    assert p.returncode == 0, out
  assert f"Resuming {tmp_path / 'multi'} at step {STOP_AT} (epoch 2)." in outputs[1], outputs[1]
  assert "epoch 4/4" in outputs[1], outputs[1]

  one, many = _history(tmp_path / "single"), _history(tmp_path / "multi")
  assert [sorted(h) for h in many] == [sorted(h) for h in one]
  exact.assert_trees_close(many, one)  # 16 steps: per-device sums and gloo's, float64
  assert len(list((tmp_path / "multi" / "tensorboard").iterdir())) == 2  # one per start
  run = json.loads((tmp_path / "multi" / "results.json").read_text())
  assert (run["process_count"], run["device_count"]) == (2, 4)

  # Another config on the workdir: process 0 refuses it, and process 1 stops too.
  refused = _two_processes(tmp_path / "multi", prepared_fake_data, coordinator_port,
                           "--config.seed=1")
  outputs = [p.communicate(timeout=PROCESS_SECONDS)[0] for p in refused]
  assert all(p.returncode == 2 for p in refused), outputs  # a user's mistake: one line, exit 2
  assert "error: Workdir" in outputs[0] and "of another config (seed: 0 -> 1)" in outputs[0], \
      outputs[0]
  assert "Process 0 refused workdir" in outputs[1], outputs[1]
