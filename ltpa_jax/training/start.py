"""One start of training, built whole before its loop runs: `build` returns a ready `Start`.

A start lays out the data, keys and hyperparameters of its runs, opens their checkpoints,
restores the latest common checkpoint (or takes the initial states), opens their recorders and
compiles the training calls and the evaluation; it says so on three lines (where it trains,
whether it resumes, what it compiled).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any

from absl import logging
from clu import parameter_overview
import jax
import numpy as np

from ltpa_jax.base import compilation_cache
from ltpa_jax.base import devices
from ltpa_jax.core import optim
from ltpa_jax.core import parallel
from ltpa_jax.core import plan as plan_lib
from ltpa_jax.core import steps
from ltpa_jax.data import datasets
from ltpa_jax.rundir import checkpoints
from ltpa_jax.rundir import recorder as recorder_lib
from ltpa_jax.training import experiment as experiment_lib

say = recorder_lib.say


@dataclasses.dataclass(frozen=True)
class Start:
  """What stays fixed while runs train, and where they start (`step`, `state`,
  `epoch_metrics`): one run or several, laid out by `layout`; lists hold one item per run."""
  experiment: experiment_lib.Experiment
  layout: parallel.Layout
  plan: plan_lib.Plan
  labels: list[str]  # how each run is named on its lines, e.g. "seed_3" (alone: "")
  train_data: datasets.Examples  # laid out
  test_data: datasets.Examples
  train_rngs: list[jax.Array]  # host-local: the pass keys derive from them
  placed_rngs: Any  # laid out like the state, for checkpoints
  hparams: list[dict]
  placed_hparams: Any
  empty_metrics: Any  # an epoch's train metrics before its first step, laid out
  probes: dict[str, tuple[np.ndarray, np.ndarray]]  # {split: (images, labels)}
  ckpts: list[checkpoints.CheckpointManager]
  recorders: list[recorder_lib.Recorder]
  compiled: dict[tuple[int, int], Any]  # the training calls of a pass, by shape (steps, batch)
  evaluate: Any  # (state, test data) -> metrics, compiled
  step: int
  state: Any
  epoch_metrics: Any


def fixed_examples(examples: datasets.Examples, count: int):
  """The first `count` images (padded to 32x32) and labels: the attention probes."""
  first = datasets.Examples(examples.images[:count], examples.labels[:count])
  return np.asarray(steps.to_device(first).images), first.labels


def build(experiment: experiment_lib.Experiment, layout: parallel.Layout, runs, workdir: str,
          stack: contextlib.ExitStack) -> Start:
  """The start of `runs` ([(workdir, config)], recorded in their workdirs), its checkpoint
  managers and recorders open for the life of `stack`."""
  config, dataset, plan = experiment.config, experiment.dataset, experiment.plan
  train_data, test_data = (layout.share(steps.to_device(split))
                           for split in (dataset.train, dataset.test))
  keys = [jax.random.split(jax.random.key(run_config.seed)) for _, run_config in runs]
  init = jax.jit(experiment.initial_state)
  initial = [init(init_rng) for init_rng, _ in keys]
  train_rngs = [train_rng for _, train_rng in keys]
  placed_rngs = layout.place(train_rngs)
  hparams = [optim.hyperparameters(run_config, steps.params_dtype(initial[0].params))
             for _, run_config in runs]
  paths = [path for path, _ in runs]
  labels = ([os.path.relpath(path, os.path.commonpath(paths)) for path in paths]
            if len(runs) > 1 else [""])
  _say_where(experiment, layout, initial[0].params, labels)
  ckpts = [stack.enter_context(checkpoints.CheckpointManager(
      path, config.keep_checkpoints, plan.steps_per_epoch)) for path in paths]
  empty_metrics = layout.place([steps.empty_metrics(steps.TrainMetrics, s.params)
                                for s in initial])
  step, state, epoch_metrics = _restore_or_init(layout, ckpts, layout.place(initial),
                                                empty_metrics, placed_rngs)
  if step:
    say(f"Resuming {workdir} at step {step} (epoch {step // plan.steps_per_epoch + 1}).")
  _say_unsaved_epochs(paths, ckpts, plan, step)
  recorders = [stack.enter_context(contextlib.closing(recorder_lib.Recorder(
      path, run_config, recorder_lib.read_history(path, step // plan.steps_per_epoch),
      prefix=f"{label} " if label else ""))) for (path, run_config), label in zip(runs, labels)]
  placed_hparams = layout.place(hparams)
  compiled, evaluate = _compile(experiment, layout, state, train_data, test_data, placed_rngs,
                                placed_hparams)
  return Start(experiment, layout, plan, labels, train_data, test_data, train_rngs, placed_rngs,
               hparams, placed_hparams, empty_metrics,
               {split: fixed_examples(getattr(dataset, split), config.attention_images)
                for split in datasets.SPLITS},
               ckpts, recorders, compiled, evaluate, step, state, epoch_metrics)


def _say_where(experiment: experiment_lib.Experiment, layout: parallel.Layout, params,
               labels: list[str]):
  """Logs the parameters; says where the runs train, on what data, with how many parameters."""
  logging.info("Parameters:\n%s", parameter_overview.get_parameter_overview(
      params, include_stats=False))
  where = devices.describe(experiment.config.model.dtype, layout.device_count)
  say(f"Training on {where}: {experiment.dataset.label}, {experiment.plan.num_examples} "
      f"training images; model: {parameter_overview.count_parameters(params):,} parameters"
      + (f"; {len(labels)} runs trained together, their steps {layout.describe()}: "
         f"{', '.join(labels)}." if len(labels) > 1 else "."))


def _restore_or_init(layout: parallel.Layout, ckpts, state, epoch_metrics, placed_rngs):
  """(step, state, epoch metrics) of the last step every run has a checkpoint of, restored in
  place of `state` and `epoch_metrics`; with no such step, (0, state, epoch_metrics)."""
  step = max(set.intersection(*(set(ckpt.steps()) for ckpt in ckpts)), default=0)
  if not step:
    return 0, state, epoch_metrics
  saved = [ckpt.restore(step, steps.checkpoint_tree(s, m), rng)[0] for ckpt, s, m, rng in zip(
      ckpts, layout.split(state), layout.split(epoch_metrics), layout.split(placed_rngs))]
  return (step, layout.join([s["state"] for s in saved]),
          layout.join([s["epoch_metrics"] for s in saved]))


def _say_unsaved_epochs(paths: list[str], ckpts, plan: plan_lib.Plan, step: int):
  """Says so where a run's history.json records epochs after `step`: their checkpoint's save
  did not finish (a crash, a full disk), and they train again."""
  for path, ckpt in zip(paths, ckpts):
    recorded = recorder_lib.read_history(path, plan.num_epochs)
    if recorded and recorded[-1]["epoch"] > step // plan.steps_per_epoch:
      saved = (f"the last complete checkpoint is {ckpt.describe(step)}" if step else
               "no checkpoint is complete")
      say(f"{path}/{recorder_lib.HISTORY_FILE} records epoch {recorded[-1]['epoch']}, but "
          f"{saved} (a save did not finish): training again from "
          f"{'there' if step else 'the start'}.")


def _compile(experiment: experiment_lib.Experiment, layout: parallel.Layout, state, train_data,
             test_data, placed_rngs, placed_hparams):
  """The training calls of a pass ({shape: compiled}) and the evaluation, compiled."""
  start, shapes = time.perf_counter(), experiment.plan.call_shapes()
  with compilation_cache.counting() as counts:
    compiled = experiment.compile_steps(layout, shapes, state, train_data, placed_rngs,
                                        placed_hparams)
    evaluate = experiment.compiled_evaluation(layout, state, test_data)
  say(f"Compiled training (batches {shapes}) and evaluation in "
      f"{time.perf_counter() - start:.1f} s{compilation_cache.describe(counts)}.")
  parallel.wait_for_every_process()  # compiling takes each process its own time
  return compiled, evaluate
