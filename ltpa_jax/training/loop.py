"""The run: trains a config in a workdir over one SGD step counter; one run or several seeds.

`train_and_evaluate` runs compiled calls of `steps.train_steps`. Passes, epochs and calls are
derived from the step (`plan.Plan`); at each epoch's last step it evaluates, records
(`recorder`) and saves a checkpoint. A stop (SIGTERM, Ctrl-C) saves at the end of the current
call and returns; a run resumes from its workdir's latest checkpoint. Alone, a run is data
parallel over every device of every process (`parallel.DataParallel`); several runs (seeds, and
a sweep's grid of float hyperparameters, `grid`) train together on a run axis
(`parallel.RunAxis`), each with a workdir of its own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import time
from typing import Sequence

from absl import logging
from clu import parameter_overview
import jax
import ml_collections
import numpy as np

from ltpa_jax.rundir import checkpoints
from ltpa_jax.base import compilation_cache
from ltpa_jax.config import validation as config_validation
from ltpa_jax.data import datasets
from ltpa_jax.base import devices
from ltpa_jax.base import errors
from ltpa_jax.training import experiment as experiment_lib
from ltpa_jax.training import grid as grid_lib
from ltpa_jax.core import memory
from ltpa_jax.core import optim
from ltpa_jax.core import parallel
from ltpa_jax.core import plan as plan_lib
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import recorder as recorder_lib
from ltpa_jax.rundir import results
from ltpa_jax.base import stopping
from ltpa_jax.core import steps
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.rundir import workdir_lock

say = recorder_lib.say
RUNS_NOTE = "trained together with {what}; images_per_second counts the images of all {k} runs"


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf; nothing was saved after the last good state."""


def fixed_examples(examples: datasets.Examples, count: int):
  """The first `count` images (padded to 32x32) and labels: the attention probes."""
  first = datasets.Examples(examples.images[:count], examples.labels[:count])
  return np.asarray(steps.to_device(first).images), first.labels


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       seeds: Sequence[int] | None = None, seed_layout: str = "vmap",
                       resume_command: str | None = None,
                       sweep: grid_lib.Grid | None = None) -> dict | list[dict] | None:
  """Trains `config` in `workdir`, resuming from the latest checkpoint; returns results.json.

  With `seeds` or a `sweep` ({field: values} of `optim.HYPERPARAMETERS`; seeds default to the
  config's), trains every run of the grid with every seed together, as `seed_layout` says
  (`parallel.SEED_LAYOUTS`), each in workdir/<grid point>/seed_<s> (`grid.runs`); returns a list
  of results. SIGTERM or Ctrl-C saves a checkpoint and returns None, naming `resume_command` if
  given. Each run's workdir is held (`workdir_lock`) from before anything is written there to
  the end.
  """
  run_start = time.perf_counter()
  alone = seeds is None and sweep is None
  seeds = [config.seed] if seeds is None else seeds
  runs = [(workdir, config)] if alone else grid_lib.runs(config, workdir, sweep or {}, seeds)
  layout = parallel.DataParallel() if alone else parallel.RunAxis(len(runs), seed_layout)
  for _, run_config in runs:  # before the workdir is touched
    config_validation.validate(run_config, layout.device_count)
  with contextlib.ExitStack() as stack:
    runs = _claim(runs, stack)
    finished = _finished(workdir, runs)
    if finished is not None:
      return finished[0] if alone else finished
    experiment = experiment_lib.build(config, layout.device_count)
    if not alone:
      memory.check_fits(experiment, len(runs))
    stop = stack.enter_context(stopping.StopSignals(announce=parallel.is_primary()))
    trainer = Trainer(experiment, layout, runs, stack)
    step, state, epoch_metrics = trainer.start(workdir)
    while step < trainer.plan.total_steps:
      step, state, epoch_metrics = trainer.call(step, state, epoch_metrics)
      epoch_end = plan_lib.is_time(step, trainer.plan.steps_per_epoch)
      if epoch_end:
        epoch_metrics = trainer.end_epoch(step, state, epoch_metrics, run_start)
      if step < trainer.plan.total_steps and parallel.any_process(stop.requested is not None):
        return trainer.stop(step, state, epoch_metrics, epoch_end, stop.requested,
                            resume_command)
    finished = trainer.finish(state, run_start, None if alone else RUNS_NOTE.format(
        what=grid_lib.describe(sweep or {}, sorted({c.seed for _, c in runs})), k=len(runs)))
  return finished[0] if alone else finished


class Trainer:
  """What stays fixed while runs train: their plan, data on the devices, compiled steps,
  checkpoints and recorders. `train_and_evaluate` passes the step, the state and the epoch's
  metrics through its methods; `layout` lays out one run or several."""

  def __init__(self, experiment: experiment_lib.Experiment, layout, runs,
               stack: contextlib.ExitStack):
    config, dataset = experiment.config, experiment.dataset
    self.experiment, self.layout, self.runs, self._stack = experiment, layout, runs, stack
    self.plan = experiment.plan
    self.train_data, self.test_data = (layout.share(steps.to_device(split))
                                       for split in (dataset.train, dataset.test))
    keys = [jax.random.split(jax.random.key(run_config.seed)) for _, run_config in runs]
    init = jax.jit(experiment.initial_state)
    self.initial = [init(init_rng) for init_rng, _ in keys]
    self.train_rngs = [train_rng for _, train_rng in keys]  # host-local: pass keys derive from
    self.placed_rngs = layout.place(self.train_rngs)  # laid out like the state, for checkpoints
    dtype = steps.params_dtype(self.initial[0].params)
    self.hparams = [optim.hyperparameters(run_config, dtype) for _, run_config in runs]
    self.placed_hparams = layout.place(self.hparams)
    # How each run is named on its lines: its path among the runs, e.g. "seed_3" (alone: "").
    paths = [path for path, _ in runs]
    self.labels = ([os.path.relpath(path, os.path.commonpath(paths)) for path in paths]
                   if len(runs) > 1 else [""])
    self.probes = {split: fixed_examples(getattr(dataset, split), config.attention_images)
                   for split in datasets.SPLITS}
    self.ckpts = [stack.enter_context(checkpoints.CheckpointManager(
        path, config.keep_checkpoints, self.plan.steps_per_epoch)) for path, _ in runs]
    self.recorders, self.progress, self._pass, self._timed = [], None, None, False

  def fresh_metrics(self):
    return self.layout.place([steps.empty_metrics(steps.TrainMetrics, s.params)
                              for s in self.initial])

  def start(self, workdir: str):
    """(step, state, epoch metrics) to start from: the latest checkpoint's, or the initial ones.
    Then opens the recorders and compiles."""
    params = self.initial[0].params
    logging.info("Parameters:\n%s", parameter_overview.get_parameter_overview(
        params, include_stats=False))
    where = devices.describe(self.experiment.config.model.dtype, self.layout.device_count)
    say(f"Training on {where}: {self.experiment.dataset.label}, {self.plan.num_examples} "
        f"training images; model: {parameter_overview.count_parameters(params):,} parameters"
        + (f"; {len(self.runs)} runs trained together: {', '.join(self.labels)}."
           if len(self.runs) > 1 else "."))
    state, epoch_metrics = self.layout.place(self.initial), self.fresh_metrics()
    step = _latest_common_step(self.ckpts)
    if step:
      saved = [ckpt.restore(step, steps.checkpoint_tree(s, m), rng)[0] for ckpt, s, m, rng in zip(
          self.ckpts, self.layout.split(state), self.layout.split(epoch_metrics),
          self.layout.split(self.placed_rngs))]
      state = self.layout.join([s["state"] for s in saved])
      epoch_metrics = self.layout.join([s["epoch_metrics"] for s in saved])
      say(f"Resuming {workdir} at step {step} (epoch {step // self.plan.steps_per_epoch + 1}).")
    self._say_unsaved_epochs(step)
    self.recorders = [self._stack.enter_context(contextlib.closing(recorder_lib.Recorder(
        path, run_config, recorder_lib.read_history(path, step // self.plan.steps_per_epoch),
        prefix=f"{label} " if label else "")))
                      for (path, run_config), label in zip(self.runs, self.labels)]
    self._compile(state)
    return step, state, epoch_metrics

  def _say_unsaved_epochs(self, step: int):
    """Says so where a run's history.json records epochs after `step`: their checkpoint's save
    did not finish (a crash, a full disk), and they train again."""
    for (path, _), ckpt in zip(self.runs, self.ckpts):
      recorded = recorder_lib.read_history(path, self.plan.num_epochs)
      if recorded and recorded[-1]["epoch"] > step // self.plan.steps_per_epoch:
        saved = (f"the last complete checkpoint is {ckpt.describe(step)}" if step else
                 "no checkpoint is complete")
        say(f"{path}/{recorder_lib.HISTORY_FILE} records epoch {recorded[-1]['epoch']}, but "
            f"{saved} (a save did not finish): training again from "
            f"{'there' if step else 'the start'}.")

  def _compile(self, state):
    """Compiles the training calls of a pass and the evaluation."""
    start, experiment = time.perf_counter(), self.experiment
    with compilation_cache.counting() as counts:
      self.compiled = experiment.compiled_steps(self.layout, state, self.train_data,
                                                self.placed_rngs, self.placed_hparams)
      for shape in self.plan.call_shapes():
        self.compiled[shape]  # pylint: disable=pointless-statement
      self.evaluate = experiment.compiled_evaluation(self.layout, state, self.test_data)
    say(f"Compiled training (batches {self.plan.call_shapes()}) and evaluation in "
        f"{time.perf_counter() - start:.1f} s{compilation_cache.describe(counts)}.")
    parallel.wait_for_every_process()  # compiling takes each process its own time

  def call(self, step: int, state, epoch_metrics):
    """Runs the call that starts at `step`; returns the step, state and epoch metrics after it.
    Raises NonFiniteLossError if a loss is not finite."""
    plan, layout = self.plan, self.layout
    epoch_start = step - step % plan.steps_per_epoch
    self.progress = self.progress or recorder_lib.EpochProgress(
        f"epoch {epoch_start // plan.steps_per_epoch + 1}/{plan.num_epochs}",
        plan.images_per_epoch, plan.images_in_epoch(step - epoch_start))
    pass_index, first, count = plan.call(step)
    if self._pass is None or self._pass[0] != pass_index:
      self._pass = (pass_index, *self._pass_orders(pass_index))
    _, orders, step_rngs = self._pass
    rows = [full[first:first + count] if first < plan.full_batches else rest[None]
            for full, rest in orders]
    start = time.perf_counter()
    state, call_metrics, losses = self.compiled[rows[0].shape](
        state, self.train_data, layout.batches(rows), step_rngs, self.placed_hparams,
        np.int32(first))
    self._check_finite(stopping.wait(losses), step)
    if not self._timed:  # the first call measures the steps
      self._timed = True
      self._warn_on_cpu((time.perf_counter() - start) / count, plan.total_steps - step)
    done_before, done = (plan.images_in_epoch(s - epoch_start) for s in (step, step + count))
    self.progress.update(done, len(self.runs) * (done - done_before))
    return step + count, state, epoch_metrics.merge(call_metrics)

  def _warn_on_cpu(self, seconds_per_step: float, steps_left: int):
    """Says, once, what a recipe on a CPU would cost (`devices.cpu_warning`)."""
    config = self.experiment.config
    warning = devices.cpu_warning(jax.devices()[0].platform, config.model.width_multiplier,
                                  config.train_examples, seconds_per_step, steps_left)
    if warning:
      say(warning)

  def _pass_orders(self, pass_index: int):
    """Each run's shuffled batches of a pass (full, rest) on the host, and its step keys (laid
    out): run i's pass p uses the keys split from fold_in(train_rngs[i], p)."""
    keys = [jax.random.split(jax.random.fold_in(rng, pass_index)) for rng in self.train_rngs]
    # On the host: slicing a device array at new static offsets would compile each slice.
    orders = [jax.device_get(steps.shuffled_batches(perm_rng, self.plan.num_examples,
                                                    self.plan.batch_size))
              for perm_rng, _ in keys]
    return orders, self.layout.place([step_rng for _, step_rng in keys])

  def _check_finite(self, losses, step: int):
    """Raises NonFiniteLossError naming the first step (and run) whose loss is not finite."""
    finite = np.isfinite(np.asarray(losses)).reshape(len(self.runs), -1)
    if finite.all():
      return
    run, offset = np.argwhere(~finite)[0]
    bad = step + int(offset)
    epoch, in_epoch = divmod(bad, self.plan.steps_per_epoch)
    pass_in_epoch, step_in_pass = divmod(in_epoch, self.plan.steps_per_pass)
    label = f" of {self.labels[run]}" if self.labels[run] else ""
    raise NonFiniteLossError(
        f"The training loss{label} is not finite at step {bad} (epoch {epoch + 1}, step "
        f"{step_in_pass} of pass {pass_in_epoch + 1}). Stopped without saving: the checkpoints "
        f"in {self.ckpts[run].directory} hold the last good state. Lower config.learning_rate or "
        "check the data.")

  def end_epoch(self, step: int, state, epoch_metrics, run_start: float):
    """At an epoch's last step: evaluates, records and saves; returns the next epoch's metrics."""
    epoch, config = step // self.plan.steps_per_epoch, self.experiment.config
    summaries = self._summaries(epoch, step, state, epoch_metrics)
    overlays = self._overlays(epoch, state)
    epoch_metrics, self.progress = self.fresh_metrics(), None
    saves = self._saves(step, state, epoch_metrics)
    for recorder, summary, images, save in zip(self.recorders, summaries, overlays, saves):
      summary["wall_seconds"] = recorder.elapsed_before + time.perf_counter() - run_start
      recorder.epoch(summary, (config.num_epochs - epoch) * self.plan.images_per_epoch
                     * len(self.runs) / summary["images_per_second"], images, save)
    return epoch_metrics

  def _summaries(self, epoch: int, step: int, state, epoch_metrics) -> list[dict[str, float]]:
    """Each run's train metrics of the epoch, learning rate, speed (over the images this
    process trained: a resumed epoch counts only its rest) and, on evaluated epochs, test
    metrics."""
    config, seconds = self.experiment.config, self.progress.seconds()
    test = ([None] * len(self.runs)
            if not (plan_lib.is_time(epoch, config.eval_every_epochs) or epoch == config.num_epochs)
            else self.layout.compute(self.evaluate(state, self.test_data)))
    summaries = []
    for train, test_run, hparams in zip(self.layout.compute(epoch_metrics), test, self.hparams):
      summary = {"epoch": epoch, "train_loss": float(train["loss"]),
                 "train_error": 100 * (1 - float(train["accuracy"])),
                 "learning_rate": float(self.experiment.schedule(hparams)(step - 1)),
                 "images_per_second": self.progress.trained / seconds, "epoch_seconds": seconds}
      if test_run is not None:
        summary.update(test_loss=float(test_run["loss"]),
                       test_top1_error=100 * (1 - float(test_run["accuracy"])),
                       test_top5_error=100 * (1 - float(test_run["top5_accuracy"])))
      summaries.append(summary)
    return summaries

  def _overlays(self, epoch: int, state) -> list[dict | None]:
    """Each run's TensorBoard attention overlays of the probes, every few epochs (else None)."""
    config, predict = self.experiment.config, self.experiment.predict
    if not self.experiment.model.attention or not (
        plan_lib.is_time(epoch, config.attention_every_epochs) or epoch == config.num_epochs):
      return [None] * len(self.runs)
    return [{f"attention/{split}": plots.attention_overlays(images, predict(s, images)[1],
                                                            scale=4)
             for split, (images, _) in self.probes.items()} for s in self.layout.split(state)]

  def _saves(self, step: int, state, epoch_metrics) -> list:
    """For each run, a function that saves its checkpoint of `step`."""
    return [functools.partial(ckpt.save, step, steps.checkpoint_tree(s, m), rng)
            for ckpt, s, m, rng in zip(self.ckpts, self.layout.split(state),
                                       self.layout.split(epoch_metrics),
                                       self.layout.split(self.placed_rngs))]

  def stop(self, step: int, state, epoch_metrics, saved: bool, reason: str | None,
           resume_command: str | None) -> None:
    """Saves (unless `saved`) and says how to resume: the one exit of a stopped run."""
    if not saved:
      for save in self._saves(step, state, epoch_metrics):
        save()
    say(f"{reason or 'Stopped by another process'}: saved {self.ckpts[0].describe(step)} to "
        + ", ".join(ckpt.directory for ckpt in self.ckpts) + ". To resume, run the same command"
        + (f": {resume_command}" if resume_command else "."))

  def finish(self, state, run_start: float, note: str | None) -> list[dict]:
    """Each run's results and figures, written by its recorder; returns the results."""
    for ckpt in self.ckpts:  # the last epoch's checkpoint is complete before results.json
      ckpt.wait()
    run_results, predict = [], self.experiment.predict
    for recorder, run_state in zip(self.recorders, self.layout.split(state)):
      predicted = ({split: predict(run_state, images) for split, (images, _) in self.probes.items()}
                   if self.experiment.model.attention else {})
      run_results.append(recorder.finish(
          recorder.elapsed_before + time.perf_counter() - run_start,
          self.experiment.dataset, self.probes, predicted, note))
    return run_results


def _claim(runs, stack: contextlib.ExitStack):
  """`runs`, after process 0 locked each one's workdir for the life of `stack`
  (`workdir_lock.held`) and recorded its config there or found it there; the other processes
  learn the outcome (see `workdir.check_same_config`)."""
  refused = None
  if parallel.is_primary():
    try:
      stack.enter_context(workdir_lock.held(*(path for path, _ in runs)))
      for path, run_config in runs:
        workdir_lib.check_same_config(path, run_config)
    except workdir_lib.ConfigMismatchError as e:
      refused = _invalid_recorded_config(path) or e
    except errors.UserError as e:  # a workdir in use, or not a folder
      refused = e
  if parallel.any_process(refused is not None):
    raise refused or errors.UserError(
        f"Process 0 refused workdir {runs[0][0]}; its output says why.")
  return runs


def _invalid_recorded_config(workdir: str) -> workdir_lib.ConfigMismatchError | None:
  """The refusal of `workdir` when the config recorded there is invalid (edited by hand, or of a
  newer version): resuming with it would fail too. None when it is valid."""
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  try:
    config_validation.validate(workdir_lib.read_config(path))
  except config_validation.ConfigError as e:
    return workdir_lib.ConfigMismatchError(
        f"Workdir {workdir} holds a run whose recorded config is invalid ({'; '.join(e.problems)}"
        f"). Correct {path} to resume that run, or use a new workdir for this config.")
  return None


def _latest_common_step(ckpts) -> int:
  """The last step every run has a checkpoint of (0: none)."""
  common = set.intersection(*(set(ckpt.steps()) for ckpt in ckpts))
  return max(common, default=0)


def _finished(workdir: str, runs) -> list[dict] | None:
  """The runs' results when each has finished (None when none has); UserError when some have."""
  finished = [os.path.exists(os.path.join(path, results.RESULTS_FILE)) for path, _ in runs]
  if not any(finished):
    return None
  if not all(finished):
    resume = "; ".join(
        f"python -m ltpa_jax --config {shlex.quote(os.path.join(path, workdir_lib.CONFIG_FILE))} "
        f"--workdir {shlex.quote(path)}" for (path, _), done in zip(runs, finished) if not done)
    raise errors.UserError(f"Some runs in {workdir} finished, others did not: resume each "
                           f"unfinished one alone ({resume}), or use a new workdir.")
  say(f"{workdir} holds a finished run; returning its results.")
  return [results.read(path) for path, _ in runs]
