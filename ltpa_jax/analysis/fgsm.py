"""Robustness of trained runs to the fast gradient sign method (FGSM): test error against eps.

Under each run's latest checkpoint, every test image x (pixel units, 0-255, before
normalisation) is replaced by clip(x + eps * sign(d loss / dx), 0, 255), the gradient of the
model in eval mode (`steps.fgsm`), and the run is evaluated on those images (`measure`): a
markdown table of top-1 / top-5 error against eps, the runs side by side, and per run
<workdir>/robustness.json and <workdir>/fgsm_examples.png (a few test images, clean and attacked
at the largest eps, with their predicted classes), and the error curves of every run in one
figure. An existing output is refused unless `overwrite`. An unfinished run is evaluated at its
latest checkpoint, with a line saying so. Runs with and without attention (linear or grid
gates) are accepted.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ltpa_jax.base import devices
from ltpa_jax.base import errors
from ltpa_jax.config import validation as config_validation
from ltpa_jax.core import steps
from ltpa_jax.data import datasets
from ltpa_jax.rundir import checkpoints
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.rundir import workdir_lock
from ltpa_jax.training import experiment as experiment_lib

RESULT_FILE = "robustness.json"
EXAMPLES_FILE = "fgsm_examples.png"
MAX_EPS = 255  # pixel units: eps = 255 can turn any pixel to black or white


def parse_epsilons(values: Sequence[str]) -> list[float]:
  """The eps of --epsilons, sorted; UserError unless each is a number in [0, MAX_EPS], once."""
  try:
    epsilons = [float(value) for value in values]
  except ValueError:
    raise errors.UserError(f"--epsilons must be comma-separated numbers (pixel units, 0-255), "
                           f"got {','.join(values)}") from None
  bad = [value for value, eps in zip(values, epsilons)
         if not (math.isfinite(eps) and 0 <= eps <= MAX_EPS)]
  if not epsilons or bad:
    raise errors.UserError(f"--epsilons must be numbers from 0 to {MAX_EPS} (pixel units), got "
                           f"{','.join(bad) or 'none'}: e.g. --epsilons 0,1,2,4,8")
  if len(set(epsilons)) < len(epsilons):
    raise errors.UserError(f"--epsilons lists an eps twice ({','.join(values)}): give each once.")
  return sorted(epsilons)


def check_outputs(workdirs: Sequence[str], out: str, overwrite: bool):
  """Before any work: UserError for a workdir given twice, an `out` that is not an image name,
  or outputs that exist (unless `overwrite`)."""
  plots.check_image_path(out)
  twice = sorted({w for w in workdirs if workdirs.count(w) > 1})
  if twice:
    raise errors.UserError(f"--workdir {', '.join(twice)} given twice: give each run once.")
  paths = [out] + [os.path.join(w, name) for w in workdirs for name in (RESULT_FILE,
                                                                         EXAMPLES_FILE)]
  existing = [path for path in paths if os.path.exists(path)]
  if existing and not overwrite:
    raise errors.UserError(f"{', '.join(existing)} exists already: give --overwrite to replace "
                           "it (or move it away, or another --out).")


def evaluate_run(experiment, state, test, epsilons: Sequence[float],
                 batch_size: int) -> list[dict]:
  """Per eps: the top-1 and top-5 error (%) and loss on `test` (device arrays) under FGSM of
  that eps, in batches of `batch_size`.

  Compiled twice: the clean evaluation (eps 0, bitwise `steps.evaluate`) and the attacked one,
  eps traced.
  """
  clean = experiment.evaluation(batch_size)
  attacked = jax.jit(functools.partial(steps.evaluate_adversarial, experiment.model,
                                       experiment.dataset.info, batch_size))
  results = []
  for eps in epsilons:
    metrics = (clean(state, test) if eps == 0 else attacked(eps, state, test)).compute()
    results.append({"eps": eps, "top1_error": steps.error_percent(metrics["accuracy"]),
                    "top5_error": steps.error_percent(metrics["top5_accuracy"]),
                    "loss": float(metrics["loss"])})
  return results


def save_examples(experiment, state, test, eps: float, count: int, path: str):
  """Draws the first `count` images of `test`, clean and under FGSM of `eps`, with the model's
  predictions."""
  images, labels = test.images[:count], test.labels[:count]
  attack = jax.jit(functools.partial(steps.fgsm, experiment.model, experiment.dataset.info))
  adversarial = attack(state, images, labels, eps)
  both = jnp.concatenate([images.astype(adversarial.dtype), adversarial])  # one compile
  predicted = np.split(np.asarray(experiment.predict(state, both)[0]).argmax(-1), 2)
  plots.save_adversarial_examples(np.asarray(images), np.asarray(adversarial), np.asarray(labels),
                                  *predicted, eps, path, experiment.dataset.class_names)


def table(runs: dict[str, dict]) -> str:
  """A markdown table: eps, then each run's top-1 and top-5 test error (%); the runs were
  evaluated under the same epsilons."""
  header = ["eps"] + [f"{name} {k}" for name in runs for k in ("top-1", "top-5")]
  rows = [header, ["---:"] * len(header)]
  for results in zip(*(run["results"] for run in runs.values()), strict=True):  # the same eps
    rows.append([f"{results[0]['eps']:g}"] + [f"{r[k]:.2f}" for r in results
                                               for k in ("top1_error", "top5_error")])
  return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def first_images(experiment, count: int | None) -> tuple[datasets.Examples, int]:
  """The first `count` test images (all if None) on the device, and the evaluation batch size:
  the run's eval_batch_size, or `count` if smaller."""
  test, batch_size = experiment.dataset.test, experiment.config.eval_batch_size
  if count is not None:
    test = datasets.Examples(test.images[:count], test.labels[:count])
    batch_size = min(batch_size, count)
  return steps.to_device(test), batch_size


def measure(workdirs: Sequence[str], epsilons: Sequence[float], out: str, examples: int = 4,
            data_dir: str | None = None, overwrite: bool = False,
            test_images: int | None = None) -> str:
  """Evaluates each run under each eps (on its first `test_images` test images, all if None)
  and writes its robustness.json and fgsm_examples.png, then the curves of every run to `out`;
  returns the table and the files written."""
  for flag, value in (("examples", examples), ("test_images", test_images)):
    if value is not None and value < 1:
      raise errors.UserError(f"--{flag} must be at least 1, got {value}.")
  check_outputs(list(workdirs), out, overwrite)
  configs = {workdir: workdir_lib.read_run_config(workdir, data_dir) for workdir in workdirs}
  for config in configs.values():  # every run's, before any work
    config_validation.validate(config, 1)
  dtypes = ", ".join(sorted({config.model.dtype for config in configs.values()}))
  devices.announce("Attacking", dtypes, 1)
  with workdir_lock.held(*configs):
    return _measure(configs, epsilons, out, examples, overwrite, test_images)


def _measure(configs, epsilons, out, examples, overwrite, test_images) -> str:
  """`measure` of the runs {workdir: config}, their workdirs held."""
  runs, wrote = {}, []
  for workdir, config in configs.items():
    experiment = experiment_lib.build(config, splits=("test",))
    state, step = experiment.restore_state(workdir)
    plan = experiment.plan
    if step < plan.total_steps:
      print(f"{workdir} is an unfinished run: evaluating its latest checkpoint, "
            f"{checkpoints.describe(step, plan.steps_per_epoch, plan.num_epochs)}, of "
            f"{plan.total_steps} steps.", flush=True)
    test, batch_size = first_images(experiment, test_images)
    runs[workdir] = {"dataset": config.dataset, "dataset_label": experiment.dataset.label,
                     "step": step, "test_images": len(test.labels), "epsilons": list(epsilons),
                     "results": evaluate_run(experiment, state, test, epsilons, batch_size)}
    path = os.path.join(workdir, RESULT_FILE)
    workdir_lib.write_json(path, runs[workdir], overwrite=overwrite)
    examples_path = os.path.join(workdir, EXAMPLES_FILE)
    save_examples(experiment, state, test, max(epsilons), examples, examples_path)
    wrote += [f"{path} (step {step}, {len(test.labels)} test images)", examples_path]
  plots.save_robustness_curves(runs, out)
  return "\n".join([table(runs), "", "Wrote " + ", ".join(wrote + [out]) + "."])
