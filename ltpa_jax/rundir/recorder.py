"""Where a run's measurements go: one call an epoch writes stdout, history.json and TensorBoard.

Only process 0 of several writes files or prints (`parallel.is_primary`); the others record
nothing, so the training loop calls the same methods in every process.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np

from ltpa_jax.core import parallel
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import results
from ltpa_jax.rundir import summaries
from ltpa_jax.rundir import workdir as workdir_lib

HISTORY_FILE = results.HISTORY_FILE
NOT_PRINTED = ("epoch", "epoch_seconds", "wall_seconds")  # in history.json, not on the epoch line
START = "start"  # in history.json: which start of the run trained the epoch (1, 2, ...)


def say(message: str):
  """One line on stdout, from the primary process (library logs go through absl logging)."""
  if parallel.is_primary():
    print(message, flush=True)


def read_history(workdir: str, epochs: int) -> list[dict[str, float]]:
  """The first `epochs` epochs of the history.json in `workdir` (absent: stopped within epoch 1)."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [h for h in json.load(f) if h["epoch"] <= epochs]


class Recorder:
  """The measurement sink of the run in `workdir`: `epoch()` appends an epoch's numbers to its
  history and writes them to history.json and TensorBoard, `say_epoch()` prints them (after
  `prefix`); `finish()` writes results.json and the figures. `history` holds the epochs recorded
  before a resume. It saves nothing: the training loop saves each epoch's checkpoint after
  `epoch()` (a resume trusts history.json to hold every epoch its checkpoint has) and before
  `say_epoch()`.
  """

  def __init__(self, workdir: str, config, history: list[dict[str, float]], prefix: str = ""):
    self.workdir, self.config, self.history, self.prefix = workdir, config, history, prefix
    # The wall seconds of the run before this process resumed it, over the starts before this
    # one that recorded an epoch (`start`: this one's number among them, and the last).
    self.elapsed_before = history[-1]["wall_seconds"] if history else 0.0
    self.start = history[-1].get(START, 1) + 1 if history else 1
    self._primary = parallel.is_primary()
    self._writer = (summaries.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                            purge_step=len(history) + 1 if history else None)
                    if self._primary else summaries.NoSummaries())
    if not history:
      self._writer.write_text("config", str(config))

  def epoch(self, summary: Mapping[str, float], images: Mapping[str, np.ndarray] | None):
    """Records an epoch's `summary` (with its "epoch") and TensorBoard `images` ({tag: NHWC});
    history.json also records which start trained it."""
    self.history.append({**summary, START: self.start})
    epoch = summary["epoch"]
    self._writer.write_scalars(epoch, {k: v for k, v in summary.items() if k != "epoch"})
    if images:
      self._writer.write_images(epoch, images)
    self._writer.flush()
    if self._primary:
      workdir_lib.write_json(os.path.join(self.workdir, HISTORY_FILE), self.history,
                             overwrite=True)

  def say_epoch(self, summary: Mapping[str, float], eta_seconds: float):
    """Prints an epoch's line: its `summary` and the time the run has left."""
    say(f"{self.prefix}epoch {summary['epoch']}/{self.config.num_epochs} " + " ".join(
        f"{k} {v:.4g}" for k, v in summary.items() if k not in NOT_PRINTED)
        + f" eta {eta_seconds:.0f}s")

  def finish(self, wall_seconds: float, dataset, probes, predicted, note: str | None = None
             ) -> dict[str, Any]:
    """Writes results.json, learning_curves.png and, with attention, attention_{split}.png of
    the `probes` ({split: (images, labels)}) under `predicted` ({split: (logits, maps)});
    returns the results. `wall_seconds`: of every start; `note` is recorded under "replicas"."""
    history = self.history
    train_seconds = sum(h["epoch_seconds"] for h in history)
    trained_images = sum(h["images_per_second"] * h["epoch_seconds"] for h in history)
    run_results = results.make(self.config, history, wall_seconds=wall_seconds,
                               images_per_second=trained_images / train_seconds,
                               dataset_label=dataset.label)
    if note:
      run_results["replicas"] = note
    if self._primary:
      plots.save_learning_curves(history, os.path.join(self.workdir, "learning_curves.png"))
      for split, (logits, maps) in predicted.items():
        images, labels = probes[split]
        plots.save_attention_grid(images, maps,
                                  os.path.join(self.workdir, f"attention_{split}.png"), labels,
                                  dataset.class_names, jax.nn.softmax(logits))
      results.write(self.workdir, run_results)
    starts = "in 1 start" if self.start == 1 else f"over {self.start} starts"
    say(f"{self.prefix}Done in {wall_seconds:.0f} s of training {starts}: "
        f"{results.describe(run_results)}; results in {self.workdir}.")
    return run_results

  def close(self):
    self._writer.close()


class EpochProgress:
  """An epoch's images trained by this process (`trained`, of every run; `done` before it
  started) and, while the epoch runs longer than `every` seconds, a progress line every `every`
  seconds."""

  def __init__(self, label: str, epoch_images: int, done: int = 0, every: float = 30.0):
    self.label, self.epoch_images, self.every = label, epoch_images, every
    self.start = self.last_line = time.perf_counter()
    self.done_before, self.trained = done, 0

  def seconds(self) -> float:
    return time.perf_counter() - self.start

  def update(self, done: int, trained: int) -> None:
    """After a call: `done` images of the epoch are done (a resumed epoch's earlier ones too),
    `trained` more images were trained by this call."""
    self.trained += trained
    now = time.perf_counter()
    if now - self.last_line < self.every or done >= self.epoch_images:
      return
    self.last_line = now
    eta = (self.epoch_images - done) * (now - self.start) / (done - self.done_before)
    say(f"  {self.label}: {done}/{self.epoch_images} images ({100 * done // self.epoch_images}%)"
        f", {self.trained / (now - self.start):.4g} images/s, epoch eta {eta:.0f}s")
