"""Data parallelism: one 1-D mesh over every device, replicated state and data, split batches.

Params, optimiser state and the dataset arrays (CIFAR is small) are replicated on every device;
each SGD step's batch is split over the devices along the batch axis, so the global batch is the
config's `batch_size`. `jit` partitions the step (SPMD): BatchNorm means and variances, the loss
and the gradients are reduced over the GLOBAL batch, so the result is that of one device up to
float rounding (tests/test_parallel.py checks it in float64 on 8 host CPU devices).

Several processes (hosts): each calls `jax.distributed.initialize()` before any other JAX call
(`train.py --distributed`); `jax.devices()` then lists every process's devices and the mesh
spans them all. Every process loads the same data and runs the same program with the same seeds;
`any_process` keeps their host-side decisions in step.
"""

from __future__ import annotations

import itertools

import jax
from jax._src import distributed  # the coordination service client: no public barrier yet
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis "batch" over `devices` (default: every device of every process).

  The axis is Auto (named, whatever the JAX version's default): the partitioner propagates the
  batch split from `shard_batches` through the step.
  """
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,),
              axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole by every device of `mesh`."""
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """Copies every array of `tree` whole onto every device of `mesh` (each process passes its
  own, identical, copy)."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(replicated(mesh), x), tree)


_BARRIERS = itertools.count()


def wait_for_every_process(timeout_s: int = 3600) -> None:
  """Blocks until every process has called it as often (a coordination-service barrier).

  On CPU, gloo connects the processes at their first collective with a fixed 30 s deadline, so a
  process that loads or compiles more slowly (a busy machine) fails its peer unless they enter
  their collectives together: call this before a collective that may meet a slow peer.
  """
  if jax.process_count() > 1:
    distributed.global_state.client.wait_at_barrier(f"ltpa_jax/{next(_BARRIERS)}",
                                                    timeout_s * 1000)


def any_process(flag: bool) -> bool:
  """Whether `flag` is true in any process; every process must call it, in the same order."""
  if jax.process_count() == 1:
    return flag
  wait_for_every_process()
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def shard_batches(tree, mesh: Mesh | None):
  """Inside jit: splits arrays shaped (steps, batch, ...) over `mesh` along the batch axis (1).

  A no-op without a mesh or on one device. A batch that does not split evenly (a pass's last,
  smaller batch) is left to the partitioner, which runs it replicated.
  """
  if mesh is None or mesh.size == 1:
    return tree
  sharding = NamedSharding(mesh, P(None, AXIS))
  return jax.tree.map(
      lambda x: x if x.shape[1] % mesh.size else jax.lax.with_sharding_constraint(x, sharding),
      tree)


def data_parallel(train_steps, mesh: Mesh | None):
  """`train_steps(state, data, batches, rng, first)` with each step's batch split over `mesh`.

  Only the batch indices are constrained: the gathered images, activations, BatchNorm
  statistics and per-example losses follow them; params and their updates stay replicated.
  """

  def steps(state, data, batches, rng, first):
    return train_steps(state, data, shard_batches(batches, mesh), rng, first)

  return steps
