"""Several seeds of one config trained together: one compiled, vmapped scan for all replicas.

    python -m ltpa_jax.replicas --config configs/vgg19_att.py --seeds 0,1,2 --workdir runs/att

Replica i is the run `train.train_and_evaluate` makes with seed seeds[i]: the same keys for its
init, data order and augmentation, its own params, BatchNorm statistics and optimiser state; only
the data arrays are shared. Each seed gets workdir/seed_<s>/ with config.json (its seed set),
history.json and results.json (no checkpoints, TensorBoard files or figures; no resuming).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax import cli
from ltpa_jax import config_validation
from ltpa_jax import datasets
from ltpa_jax import errors
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import results
from ltpa_jax import train
from ltpa_jax import workdir as workdir_lib

HISTORY_FILE = "history.json"
SPEED_NOTE = ("trained together with seeds {seeds}; images_per_second counts the images of all "
              "{k} replicas")


def initial_states(model, tx, image_shape, seeds: Sequence[int]):
  """Stacked initial TrainStates and training keys: replica i's are those of seed seeds[i] alone.

  Initialises the replicas one by one with one compiled function, then stacks them (a vmapped
  init took 31 s to compile on CPU for the tiny config).
  """
  init = jax.jit(functools.partial(train.initial_state, model, tx, image_shape=image_shape))
  keys = [jax.random.split(jax.random.key(seed)) for seed in seeds]
  states = [init(init_rng) for init_rng, _ in keys]
  return (jax.tree.map(lambda *leaves: jnp.stack(leaves), *states),
          jnp.stack([train_rng for _, train_rng in keys]))


def compile_train_steps(model, tx, info, states, data, rngs, shapes):
  """AOT-compiles `train.train_steps` vmapped over the replicas' states, batches and keys (data
  shared; states donated) for each per-replica batches shape; returns {shape: fn}."""
  steps = jax.vmap(functools.partial(train.train_steps, model, tx, info),
                   in_axes=(0, None, 0, 0, None))
  jitted = jax.jit(steps, donate_argnums=0)
  k = rngs.shape[0]
  return {shape: jitted.lower(states, data, jax.ShapeDtypeStruct((k, *shape), jnp.int32), rngs,
                              np.int32(0)).compile()
          for shape in shapes}


def compile_evaluate(model, info, batch_size: int, states, data):
  """`train.evaluate` vmapped over the replicas' states (data shared), AOT-compiled."""
  evaluate = jax.vmap(functools.partial(train.evaluate, model, info, batch_size), (0, None))
  return jax.jit(evaluate).lower(states, data).compile()


def train_pass(compiled, batch_size: int, steps_per_call: int, states, data, rngs):
  """One shuffled pass per replica; replica i does what `train.train_pass` does with rngs[i]."""
  keys = jax.vmap(jax.random.split)(rngs)
  perm_rngs, step_rngs = keys[:, 0], keys[:, 1]
  n = data.labels.shape[0]
  full, rest = jax.device_get(  # host slices: device slices at new offsets would each compile
      jax.vmap(lambda rng: train.shuffled_batches(rng, n, batch_size))(perm_rngs))
  chunk = steps_per_call or max(full.shape[1], 1)
  calls = [full[:, i:i + chunk] for i in range(0, full.shape[1], chunk)]
  if rest.shape[1]:
    calls.append(rest[:, None])
  totals, first = None, 0
  for batches in calls:
    states, chunk_metrics, _ = compiled[batches.shape[1:]](states, data, batches, step_rngs,
                                                           np.int32(first))
    totals = chunk_metrics if totals is None else totals.merge(chunk_metrics)
    first += batches.shape[1]
  return states, totals


def _compute(stacked_metrics):
  """Each replica's values of a stacked clu metrics Collection: {name: (replicas,)}."""
  return jax.vmap(lambda m: m.compute())(stacked_metrics)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) < len(seeds) or min(seeds) < 0:
    raise errors.UserError(f"seeds must be distinct non-negative ints, at least one; got "
                           f"{seeds}")
  return seeds


def _seed_workdir(workdir: str, config, seed: int):
  """workdir/seed_<seed> for `config` with that seed; refuses one that holds a run."""
  seed_config = config.copy_and_resolve_references()
  seed_config.seed = seed
  path = os.path.join(workdir, f"seed_{seed}")
  workdir_lib.check_same_config(path, seed_config)
  for name in (HISTORY_FILE, results.RESULTS_FILE):
    if os.path.exists(os.path.join(path, name)):
      raise FileExistsError(f"{path} holds a run ({name}); replicas neither resume nor "
                            "overwrite runs. Use a new workdir.")
  return path, seed_config


def train_replicas(config, seeds: Sequence[int], workdir: str):
  """Trains `config` once per seed, all replicas together, evaluating as `train.py` does.

  Writes workdir/seed_<s>/{config,history,results}.json; returns the stacked final TrainStates
  and each seed's results.
  """
  run_start = time.perf_counter()
  seeds = _check_seeds(seeds)
  config_validation.validate(config)
  runs = [_seed_workdir(workdir, config, seed) for seed in seeds]

  info = datasets.dataset_info(config.dataset)
  train_split, test_split = train.load_splits(config)
  train_data, test_data = train.to_device(train_split), train.to_device(test_split)
  num_train = train_data.labels.shape[0]

  model = models.create_model(config.model, info.num_classes)
  schedule = optim.learning_rate_schedule(config, -(-num_train // config.batch_size))
  tx = optim.sgd(schedule, config.momentum, config.weight_decay)
  states, train_rngs = initial_states(model, tx, info.image_shape, seeds)
  compile_start = time.perf_counter()
  steps_per_call = train.resolved_steps_per_call(config)
  shapes = train.chunk_shapes(num_train, config.batch_size, steps_per_call)
  compiled = compile_train_steps(model, tx, info, states, train_data, train_rngs, shapes)
  eval_fn = compile_evaluate(model, info, config.eval_batch_size, states, test_data)
  train.report(f"Compiled training of {len(seeds)} replicas (batches {shapes}) and evaluation "
               f"in {time.perf_counter() - compile_start:.1f} s.")

  histories = [[] for _ in seeds]
  for epoch in range(1, config.num_epochs + 1):
    epoch_start = time.perf_counter()
    for p in range(config.passes_per_epoch):
      index = (epoch - 1) * config.passes_per_epoch + p
      pass_rngs = jax.vmap(lambda rng: jax.random.fold_in(rng, index))(train_rngs)
      states, train_metrics = train_pass(compiled, config.batch_size, steps_per_call, states,
                                         train_data, pass_rngs)
    train_summary = jax.device_get(_compute(train_metrics))
    test = None
    if epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs:
      test = jax.device_get(_compute(eval_fn(states, test_data)))
    epoch_seconds = time.perf_counter() - epoch_start
    for i, (seed, history) in enumerate(zip(seeds, histories)):
      summary = {
          "epoch": epoch,
          "train_loss": float(train_summary["loss"][i]),
          "train_error": 100 * (1 - float(train_summary["accuracy"][i])),
          "learning_rate": float(schedule(int(states.step[i]) - 1)),
          "images_per_second": len(seeds) * num_train * config.passes_per_epoch / epoch_seconds,
          "epoch_seconds": epoch_seconds,
      }
      if test is not None:
        summary.update(test_loss=float(test["loss"][i]),
                       test_top1_error=100 * (1 - float(test["accuracy"][i])),
                       test_top5_error=100 * (1 - float(test["top5_accuracy"][i])))
      history.append(summary)
      train.report(f"seed {seed} epoch {epoch}/{config.num_epochs} " + " ".join(
          f"{k} {v:.4g}" for k, v in summary.items() if k not in ("epoch", "epoch_seconds")))

  train_seconds = sum(h["epoch_seconds"] for h in histories[0])
  label = datasets.label(config.dataset, config.data_dir)
  run_results = []
  for (path, seed_config), history in zip(runs, histories):
    workdir_lib.write_json(os.path.join(path, HISTORY_FILE), history)
    run = results.make(
        seed_config, history, wall_seconds=time.perf_counter() - run_start,
        images_per_second=len(seeds) * num_train * config.passes_per_epoch * len(history)
        / train_seconds, dataset_label=label)
    run["replicas"] = SPEED_NOTE.format(seeds=seeds, k=len(seeds))
    results.write(path, run)
    run_results.append(run)
  return states, run_results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train_replicas(FLAGS.config, cli.int_list(FLAGS["seeds"]), FLAGS.workdir)


if __name__ == "__main__":  # flags defined here only: importing this module defines none
  FLAGS = flags.FLAGS
  cli.define_config_flag()
  flags.DEFINE_list("seeds", None, "Comma-separated seeds, one run each, e.g. 0,1,2.")
  flags.DEFINE_string("workdir", None, "Directory for the runs (seed_<s>/ each).")
  flags.mark_flags_as_required(["config", "seeds", "workdir"])
  cli.run(main)
