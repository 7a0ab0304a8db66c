"""The run: trains a config in a workdir over one SGD step counter; one run or several seeds.

`train_and_evaluate` reads top to bottom: it validates each run's config, claims the runs'
workdirs, builds the experiment and then the start (`start.build`: restored or initial states,
compiled calls of `steps.train_steps`), trains and finishes. Passes, epochs and calls are
derived from the step (`plan.Plan`); at each epoch's last step the loop evaluates, records
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
import time
from typing import Sequence

import jax
import ml_collections
import numpy as np

from ltpa_jax.base import devices
from ltpa_jax.base import errors
from ltpa_jax.base import stopping
from ltpa_jax.config import validation as config_validation
from ltpa_jax.core import memory
from ltpa_jax.core import parallel
from ltpa_jax.core import plan as plan_lib
from ltpa_jax.core import steps
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import recorder as recorder_lib
from ltpa_jax.rundir import results
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.rundir import workdir_lock
from ltpa_jax.training import experiment as experiment_lib
from ltpa_jax.training import grid as grid_lib
from ltpa_jax.training import start as start_lib

say = recorder_lib.say
# Runs on a run axis train in one program: no run's own speed can be measured.
RUNS_NOTE = ("trained together with {what} in one program; images_per_second is that program's: "
             "the images of all {k} runs per second, the same in each run's results")


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf; nothing was saved after the last good state."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       seeds: Sequence[int] | None = None, seed_layout: str = parallel.AUTO,
                       resume_command: str | None = None,
                       sweep: grid_lib.Grid | None = None) -> dict | list[dict] | None:
  """Trains `config` in `workdir`, resuming from the latest checkpoint; returns results.json.

  With `seeds` or a `sweep` ({field: values} of `optim.HYPERPARAMETERS`; seeds default to the
  config's), trains every run of the grid with every seed together, as `seed_layout` says
  (`parallel.SEED_LAYOUTS`), each in workdir/<grid point>/seed_<s> (`grid.runs`); returns a list
  of results. SIGTERM or Ctrl-C saves a checkpoint and returns None, naming `resume_command` if
  given. Each run's workdir is held (`workdir_lock`) from before anything is written there to
  the end; a start that fails before training (no data) leaves no workdir it made.
  """
  run_start = time.perf_counter()
  alone = seeds is None and sweep is None
  seeds = [config.seed] if seeds is None else seeds
  runs = [(workdir, config)] if alone else grid_lib.runs(config, workdir, sweep or {}, seeds)
  layout = parallel.DataParallel() if alone else parallel.RunAxis(len(runs), seed_layout)
  for _, run_config in runs:  # once each, before the workdir is touched
    config_validation.validate(run_config, layout.device_count)
  with contextlib.ExitStack() as stack:
    new = _claim(runs, stack)
    finished = _finished(workdir, runs, new)
    if finished is not None:
      return finished[0] if alone else finished
    experiment = experiment_lib.build(config, layout.device_count, validate=False)
    if not alone:
      memory.check_fits(experiment, len(runs))
    for path, run_config in new:
      workdir_lib.record_config(path, run_config)
    stop = stack.enter_context(stopping.StopSignals(announce=parallel.is_primary()))
    start = start_lib.build(experiment, layout, runs, workdir, stack)
    state = _train(start, stop, run_start, resume_command)
    if state is None:
      return None
    finished = _finish(start, state, run_start, None if alone else RUNS_NOTE.format(
        what=grid_lib.describe(sweep or {}, sorted({c.seed for _, c in runs})), k=len(runs)))
  return finished[0] if alone else finished


def _train(start: start_lib.Start, stop: stopping.StopSignals, run_start: float,
           resume_command: str | None):
  """Trains from `start` to the end: the runs' last state; None after a stop, saved."""
  plan = start.plan
  step, state, epoch_metrics = start.step, start.state, start.epoch_metrics
  progress = _epoch_progress(start, step)
  for shape, first, batches, step_rngs in _calls(start, step):
    call_start = time.perf_counter()
    state, call_metrics, losses = start.compiled[shape](
        state, start.train_data, batches, step_rngs, start.placed_hparams, np.int32(first))
    _check_finite(start, stopping.wait(losses), step)
    if step == start.step:  # the first call measures the steps
      _warn_on_cpu(start, (time.perf_counter() - call_start) / shape[0], plan.total_steps - step)
    epoch_start = step - step % plan.steps_per_epoch
    done_before, done = (plan.images_in_epoch(s - epoch_start) for s in (step, step + shape[0]))
    progress.update(done, len(start.labels) * (done - done_before))
    step, epoch_metrics = step + shape[0], epoch_metrics.merge(call_metrics)
    epoch_end = plan_lib.is_time(step, plan.steps_per_epoch)
    if epoch_end:
      _end_epoch(start, step, state, epoch_metrics, progress, run_start)
      epoch_metrics, progress = start.empty_metrics, _epoch_progress(start, step)
    if step < plan.total_steps and parallel.any_process(stop.requested is not None):
      if not epoch_end:  # an epoch's end saved already
        for save in _saves(start, step, state, epoch_metrics):
          save()
      say(f"{stop.requested or 'Stopped by another process'}: saved "
          f"{start.ckpts[0].describe(step)} to " + ", ".join(c.directory for c in start.ckpts)
          + ". To resume, run the same command"
          + (f": {resume_command}" if resume_command else "."))
      return None
  return state


def _calls(start: start_lib.Start, step: int):
  """(shape, first, batches, step keys) of each call from `step` to the end of training: the
  call of shape[0] steps of shape[1] images from step `first` of its pass, and the runs'
  `batches` of it in their pass's order."""
  plan = start.plan
  for pass_index in range(step // plan.steps_per_pass, plan.total_steps // plan.steps_per_pass):
    orders, step_rngs = _pass_orders(start, pass_index)
    first = max(step - pass_index * plan.steps_per_pass, 0)
    while first < plan.steps_per_pass:
      _, _, count = plan.call(pass_index * plan.steps_per_pass + first)
      rows = [full[first:first + count] if first < plan.full_batches else rest[None]
              for full, rest in orders]
      yield rows[0].shape, first, start.layout.batches(rows), step_rngs
      first += count


def _pass_orders(start: start_lib.Start, pass_index: int):
  """Each run's shuffled batches of a pass (full, rest) on the host, and its step keys (laid
  out): run i's pass p uses the keys split from fold_in(train_rngs[i], p)."""
  keys = [jax.random.split(jax.random.fold_in(rng, pass_index)) for rng in start.train_rngs]
  # On the host: slicing a device array at new static offsets would compile each slice.
  orders = [jax.device_get(steps.shuffled_batches(perm_rng, start.plan.num_examples,
                                                  start.plan.batch_size))
            for perm_rng, _ in keys]
  return orders, start.layout.place([step_rng for _, step_rng in keys])


def _epoch_progress(start: start_lib.Start, step: int) -> recorder_lib.EpochProgress:
  """The progress of the epoch that step `step` falls in (its first steps done before)."""
  plan = start.plan
  epoch, in_epoch = divmod(step, plan.steps_per_epoch)
  return recorder_lib.EpochProgress(f"epoch {epoch + 1}/{plan.num_epochs}", plan.images_per_epoch,
                                    plan.images_in_epoch(in_epoch))


def _warn_on_cpu(start: start_lib.Start, seconds_per_step: float, steps_left: int):
  """Says what a recipe on a CPU would cost (`devices.cpu_warning`)."""
  config = start.experiment.config
  warning = devices.cpu_warning(jax.devices()[0].platform, config.model.width_multiplier,
                                config.train_examples, seconds_per_step, steps_left)
  if warning:
    say(warning)


def _check_finite(start: start_lib.Start, losses, step: int):
  """Raises NonFiniteLossError naming the first step (and run) whose loss is not finite."""
  finite = np.isfinite(np.asarray(losses)).reshape(len(start.labels), -1)
  if finite.all():
    return
  run, offset = np.argwhere(~finite)[0]
  bad, plan = step + int(offset), start.plan
  epoch, in_epoch = divmod(bad, plan.steps_per_epoch)
  pass_in_epoch, step_in_pass = divmod(in_epoch, plan.steps_per_pass)
  label = f" of {start.labels[run]}" if start.labels[run] else ""
  raise NonFiniteLossError(
      f"The training loss{label} is not finite at step {bad} (epoch {epoch + 1}, step "
      f"{step_in_pass} of pass {pass_in_epoch + 1}). Stopped without saving: the checkpoints "
      f"in {start.ckpts[run].directory} hold the last good state. Lower config.learning_rate or "
      "check the data.")


def _end_epoch(start: start_lib.Start, step: int, state, epoch_metrics,
               progress: recorder_lib.EpochProgress, run_start: float):
  """At an epoch's last step: evaluates and records each run, saves its checkpoint (after
  history.json, which a resume trusts to hold every epoch its checkpoint has), then prints its
  line."""
  epoch, plan = step // start.plan.steps_per_epoch, start.plan
  summaries = _summaries(start, epoch, step, state, epoch_metrics, progress)
  overlays = _overlays(start, epoch, state)
  saves = _saves(start, step, state, start.empty_metrics)
  for recorder, summary, images, save in zip(start.recorders, summaries, overlays, saves):
    summary["wall_seconds"] = recorder.elapsed_before + time.perf_counter() - run_start
    recorder.epoch(summary, images)
    save()
    recorder.say_epoch(summary, (plan.num_epochs - epoch) * plan.images_per_epoch
                       * len(start.labels) / summary["images_per_second"])


def _summaries(start: start_lib.Start, epoch: int, step: int, state, epoch_metrics,
               progress: recorder_lib.EpochProgress) -> list[dict[str, float]]:
  """Each run's train metrics of the epoch, learning rate, speed (over the images this
  process trained: a resumed epoch counts only its rest; of every run, see RUNS_NOTE) and, on
  evaluated epochs, test metrics."""
  config, seconds = start.experiment.config, progress.seconds()
  test = ([None] * len(start.labels)
          if not (plan_lib.is_time(epoch, config.eval_every_epochs) or epoch == config.num_epochs)
          else start.layout.compute(start.evaluate(state, start.test_data)))
  summaries = []
  for train, test_run, hparams in zip(start.layout.compute(epoch_metrics), test, start.hparams):
    summary = {"epoch": epoch, "train_loss": float(train["loss"]),
               "train_error": steps.error_percent(train["accuracy"]),
               "learning_rate": float(start.experiment.schedule(hparams)(step - 1)),
               "images_per_second": progress.trained / seconds, "epoch_seconds": seconds}
    if test_run is not None:
      summary.update(test_loss=float(test_run["loss"]),
                     test_top1_error=steps.error_percent(test_run["accuracy"]),
                     test_top5_error=steps.error_percent(test_run["top5_accuracy"]))
    summaries.append(summary)
  return summaries


def _overlays(start: start_lib.Start, epoch: int, state) -> list[dict | None]:
  """Each run's TensorBoard attention overlays of the probes, every few epochs (else None)."""
  config, predict = start.experiment.config, start.experiment.predict
  if not start.experiment.model.attention or not (
      plan_lib.is_time(epoch, config.attention_every_epochs) or epoch == config.num_epochs):
    return [None] * len(start.labels)
  return [{f"attention/{split}": plots.attention_overlays(images, predict(s, images)[1], scale=4)
           for split, (images, _) in start.probes.items()} for s in start.layout.split(state)]


def _saves(start: start_lib.Start, step: int, state, epoch_metrics) -> list:
  """For each run, a function that saves its checkpoint of `step`."""
  return [functools.partial(ckpt.save, step, steps.checkpoint_tree(s, m), rng)
          for ckpt, s, m, rng in zip(start.ckpts, start.layout.split(state),
                                     start.layout.split(epoch_metrics),
                                     start.layout.split(start.placed_rngs))]


def _finish(start: start_lib.Start, state, run_start: float, note: str | None) -> list[dict]:
  """Each run's results and figures, written by its recorder; returns the results."""
  for ckpt in start.ckpts:  # the last epoch's checkpoint is complete before results.json
    ckpt.wait()
  run_results, predict = [], start.experiment.predict
  for recorder, run_state in zip(start.recorders, start.layout.split(state)):
    predicted = ({split: predict(run_state, images) for split, (images, _) in start.probes.items()}
                 if start.experiment.model.attention else {})
    run_results.append(recorder.finish(
        recorder.elapsed_before + time.perf_counter() - run_start,
        start.experiment.dataset, start.probes, predicted, note))
  return run_results


def _claim(runs, stack: contextlib.ExitStack) -> list:
  """The runs whose workdir records no config yet, after process 0 locked each one's workdir
  for the life of `stack` (`workdir_lock.held`) and found its config there or none; the other
  processes learn the outcome (see `workdir.check_config`). The folders made for them are
  removed at the end if they are still empty (a start that failed before training)."""
  refused, new = None, []
  if parallel.is_primary():
    stack.callback(_remove_empty, _missing_folders(path for path, _ in runs))  # after the locks
    try:
      stack.enter_context(workdir_lock.held(*(path for path, _ in runs)))
      for path, run_config in runs:
        if not workdir_lib.check_config(path, run_config):
          new.append((path, run_config))
    except workdir_lib.ConfigMismatchError as e:
      refused = _invalid_recorded_config(path) or e
    except errors.UserError as e:  # a workdir in use, or not a folder
      refused = e
  if parallel.any_process(refused is not None):
    raise refused or errors.UserError(
        f"Process 0 refused workdir {runs[0][0]}; its output says why.")
  return new


def _missing_folders(paths) -> list[str]:
  """The folders of `paths` and their parents that do not exist, deepest first."""
  missing = set()
  for path in paths:
    path = os.path.abspath(path)
    while not os.path.exists(path):
      missing.add(path)
      path = os.path.dirname(path)
  return sorted(missing, key=lambda p: p.count(os.sep), reverse=True)


def _remove_empty(folders: list[str]):
  """Removes each of `folders` (deepest first) that is empty."""
  for folder in folders:
    if os.path.isdir(folder) and not os.listdir(folder):
      os.rmdir(folder)


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


def _finished(workdir: str, runs, new) -> list[dict] | None:
  """The runs' results when each has finished, said as recorded (None when none has);
  UserError when some have, after recording the configs of the `new` runs, which its commands
  read."""
  finished = [os.path.exists(os.path.join(path, results.RESULTS_FILE)) for path, _ in runs]
  if not any(finished):
    return None
  if not all(finished):
    for path, run_config in new:
      workdir_lib.record_config(path, run_config)
    resume = "; ".join(workdir_lib.train_command(path)
                       for (path, _), done in zip(runs, finished) if not done)
    raise errors.UserError(f"Some runs in {workdir} finished, others did not: resume each "
                           f"unfinished one alone ({resume}), or use a new workdir.")
  recorded = [results.read(path) for path, _ in runs]
  if len(runs) == 1:
    say(f"{workdir} holds a finished run, not trained again; its recorded results: "
        f"{results.describe(recorded[0])}.")
  else:
    say(f"{workdir} holds {len(runs)} finished runs, not trained again; their recorded results:")
    for (path, _), run_results in zip(runs, recorded):
      say(f"  {os.path.relpath(path, workdir)}: {results.describe(run_results)}.")
  return recorded
