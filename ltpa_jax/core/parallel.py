"""How runs' arrays and steps are laid out: data parallel (one run) or a run axis (several).

Data parallelism: one 1-D mesh over every device, replicated state and data, split batches.

Params, optimiser state and the dataset arrays (CIFAR is small) are replicated on every device;
each SGD step's batch is split over the devices along the batch axis, so the global batch is the
config's `batch_size`. `jit` partitions the step (SPMD): BatchNorm means and variances, the loss
and the gradients are reduced over the GLOBAL batch, so the result is that of one device up to
float rounding (tests/test_parallel.py checks it in float64 on 8 host CPU devices).

Several processes (hosts): each calls `jax.distributed.initialize()` before any other JAX call
(`train.py --distributed`); `jax.devices()` then lists every process's devices and the mesh
spans them all. Every process loads the same data and runs the same program with the same seeds;
`any_process` keeps their host-side decisions in step.

A run axis: several runs of one config that differ in their seed and float hyperparameters (seeds
of `replicas`, the grid of `sweep`), their states, keys and hyperparameters stacked on a leading
axis and their steps in one program (vmapped over the axis, or one after another; data shared),
on one device. `DataParallel` and `RunAxis` give the training loop one interface to both:
`Layout`.
"""

from __future__ import annotations

import itertools
from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from orbax.checkpoint import multihost as orbax_multihost
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
  their collectives together: call this before a collective that may meet a slow peer. The
  barrier must therefore not be a collective itself: JAX's public one,
  `multihost_utils.sync_global_devices`, is an all-gather over the devices (gloo on CPU) and
  would meet that deadline. Orbax's public `get_barrier_sync_fn` waits at the barrier of JAX's
  coordination service (which `jax.distributed.initialize` starts), with our timeout.
  """
  if jax.process_count() > 1:
    orbax_multihost.get_barrier_sync_fn()(key=f"ltpa_jax/{next(_BARRIERS)}",
                                          timeout_ms=timeout_s * 1000)


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
  """`train_steps(state, data, batches, *rest)` with each step's batch split over `mesh`.

  Only the batch indices are constrained: the gathered images, activations, BatchNorm
  statistics and per-example losses follow them; params and their updates stay replicated.
  """

  def steps(state, data, batches, *rest):
    return train_steps(state, data, shard_batches(batches, mesh), *rest)

  return steps


def is_primary() -> bool:
  """Whether this process writes the run's files and progress (process 0 of several)."""
  return jax.process_index() == 0


class Layout(Protocol):
  """How runs' arrays and steps are laid out: `DataParallel` (one run) or `RunAxis` (several).

  `place`, `join` and `split` take and give one tree per run: host-local trees, restored trees
  and the laid-out tree.
  """
  device_count: int  # the devices one run's batches are split over

  def share(self, tree):
    """Lays out what every run shares (the data)."""

  def place(self, trees: Sequence):
    """Lays out the runs' host-local trees (fresh states, keys, hyperparameters)."""

  def join(self, trees: Sequence):
    """The runs' trees as laid out, from trees restored in place (`split`'s parts)."""

  def split(self, tree) -> list:
    """Each run's part of a laid-out tree."""

  def steps(self, train_steps: Callable) -> Callable:
    """`train_steps(state, data, batches, rng, hparams, first)` for this layout."""

  def evaluate(self, evaluate: Callable) -> Callable:
    """`evaluate(state, data, mesh=...)` as `evaluate(state, data)` for this layout."""

  def batches(self, rows: Sequence[np.ndarray]) -> np.ndarray:
    """The `batches` argument from each run's rows of batch indices."""

  def batches_like(self, shape) -> jax.ShapeDtypeStruct:
    """The abstract `batches` argument for rows of `shape` (steps, batch)."""

  def compute(self, collection) -> list:
    """Each run's values of a clu metrics Collection, on the host."""


class DataParallel:
  """A `Layout`: one run, its batches split over every device of every process; state and data
  replicated."""

  def __init__(self):
    self.mesh = make_mesh()
    self.device_count = self.mesh.size

  def share(self, tree):
    return replicate(tree, self.mesh)

  def place(self, trees: Sequence):
    (tree,) = trees
    return self.share(tree)

  def join(self, trees: Sequence):
    (tree,) = trees
    return tree

  def split(self, tree) -> list:
    return [tree]

  def steps(self, train_steps: Callable) -> Callable:
    return data_parallel(train_steps, self.mesh)

  def evaluate(self, evaluate: Callable) -> Callable:
    return lambda state, data: evaluate(state, data, mesh=self.mesh)

  def batches(self, rows: Sequence[np.ndarray]) -> np.ndarray:
    (batches,) = rows
    return batches

  def batches_like(self, shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.int32, sharding=replicated(self.mesh))

  def compute(self, collection) -> list:
    return [jax.device_get(collection.compute())]


# How a run axis runs its runs' steps in one program: "vmap" batches them (each convolution
# becomes one over every run's weights) | "loop" runs one after another.
SEED_LAYOUTS = ("vmap", "loop")
# "auto", the commands' default, picks by platform (AUTO_SEED_LAYOUTS, else "vmap"): on a 2-core
# CPU 8 tiny runs trained at ~12 images/s vmapped and ~200 looped; on GPUs the speed sweep of
# benchmarks/GPU_QUEUE.md's job 1 decides.
AUTO = "auto"
AUTO_SEED_LAYOUTS = {"cpu": "loop"}


def seed_layout(how: str, platform: str | None = None) -> str:
  """The layout `how` names (one of SEED_LAYOUTS, or AUTO: the one chosen for `platform`,
  default JAX's default backend)."""
  if how == AUTO:
    return AUTO_SEED_LAYOUTS.get(platform or jax.default_backend(), "vmap")
  if how not in SEED_LAYOUTS:
    raise ValueError(f"seed layout must be one of {AUTO}, {', '.join(SEED_LAYOUTS)}; got {how!r}")
  return how


class RunAxis:
  """A `Layout`: `size` runs of one config (their seeds and float hyperparameters may differ),
  stacked on a leading axis, on the default device; `how` (`seed_layout`'s argument) runs their
  steps in one program."""

  def __init__(self, size: int, how: str = AUTO):
    self.size, self.how, self.chosen = size, seed_layout(how), how == AUTO
    self.device_count = 1

  def describe(self) -> str:
    """How the runs' steps run, e.g. "looped (the default on cpu; --seed_layout=vmap batches
    them)"."""
    done = {"vmap": "vmapped", "loop": "looped"}[self.how]
    if not self.chosen:
      return done
    other = next(h for h in SEED_LAYOUTS if h != self.how)
    return (f"{done} (the default on {jax.default_backend()}; --seed_layout={other} "
            f"{'batches them' if other == 'vmap' else 'runs them one after another'})")

  def _map(self, fn: Callable, in_axes: tuple) -> Callable:
    """`fn` over the run axis of the arguments whose `in_axes` is 0 (the others shared)."""
    if self.how == "vmap":
      return jax.vmap(fn, in_axes=in_axes)

    def looped(*args):
      outs = [fn(*(arg if axis is None else jax.tree.map(lambda x, i=i: x[i], arg)
                   for arg, axis in zip(args, in_axes))) for i in range(self.size)]
      return self.place(outs)

    return looped

  def share(self, tree):
    return tree

  def place(self, trees: Sequence):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)

  join = place

  def split(self, tree) -> list:
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(self.size)]

  def steps(self, train_steps: Callable) -> Callable:
    return self._map(train_steps, (0, None, 0, 0, 0, None))

  def evaluate(self, evaluate: Callable) -> Callable:
    return self._map(evaluate, (0, None))

  def batches(self, rows: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack(rows)

  def batches_like(self, shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.size, *shape), jnp.int32)

  def compute(self, collection) -> list:
    return self.split(jax.device_get(jax.vmap(lambda m: m.compute())(collection)))


def compile_steps(train_steps: Callable, layout: Layout, shapes: Sequence[tuple[int, int]],
                  state, data, rng, hparams) -> dict[tuple[int, int], jax.stages.Compiled]:
  """`train_steps(state, data, batches, rng, hparams, first)` in `layout` (state donated),
  compiled ahead of time for each shape (steps, batch) in `shapes` of one run's `batches`, for
  arguments laid out like these: {shape: compiled}."""
  jitted = jax.jit(layout.steps(train_steps), donate_argnums=0)
  state, data, rng, hparams = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      (state, data, rng, hparams))
  return {shape: jitted.lower(state, data, layout.batches_like(shape), rng, hparams,
                              np.int32(0)).compile() for shape in shapes}
