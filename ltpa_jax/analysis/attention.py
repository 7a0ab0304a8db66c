"""Attention maps and predictions of a run's checkpoint, drawn for test images or image files."""

import os
import sys

import jax
import numpy as np

from ltpa_jax.base import errors
from ltpa_jax.data import image_files
from ltpa_jax.data import input_pipeline
from ltpa_jax.rundir import plots
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.training import experiment as experiment_lib


def read_run_config(workdir: str, data_dir: str | None = None):
  """The config of the attention run in `workdir` (reading data from `data_dir` if given);
  UserError if there is none (`workdir.read_run_config`) or it has no attention."""
  config = workdir_lib.read_run_config(workdir, data_dir)
  if not config.model.attention:
    raise errors.UserError(f"The run in {workdir} has no attention (config.model.attention="
                           "False): give the workdir of a run of an attention config, e.g. "
                           "configs/vgg19_att.py.")
  return config


def predict(experiment, workdir: str, images, step=None):
  """(softmax probabilities (N, classes), attention maps, step) of uint8 images (N, 32, 32, C)
  under the run's checkpoint of SGD `step` (default: the latest)."""
  state, step = experiment.restore_state(workdir, step)
  logits, maps = experiment.predict(state, images)
  return np.asarray(jax.nn.softmax(logits)), maps, step


def render(workdir: str, out: str, indices, step=None, data_dir=None) -> str:
  """Writes the attention grid of test images `indices` under the checkpoint of SGD `step`."""
  plots.check_image_path(out)
  experiment = experiment_lib.build(read_run_config(workdir, data_dir), splits=("test",))
  test = experiment.dataset.test
  outside = [i for i in indices if not 0 <= i < len(test.labels)]
  if outside:
    raise errors.UserError(f"Test images {outside} do not exist: the test split has "
                           f"{len(test.labels)} images, 0 to {len(test.labels) - 1}.")
  images = np.asarray(input_pipeline.pad_to_32(test.images[np.asarray(indices)]))
  probabilities, maps, step = predict(experiment, workdir, images, step)
  plots.save_attention_grid(images, maps, out, test.labels[np.asarray(indices)],
                            experiment.dataset.class_names, probabilities)
  return f"Wrote {out}: attention of test images {list(indices)} after step {step}."


def render_images(workdir: str, out: str, paths, crop=False, step=None, data_dir=None) -> str:
  """Writes the attention grid of the image files `paths`, resized (`crop`: centre-cropped) to
  the run's input; returns what it wrote and each image's top-3 classes, one line each.

  A file that cannot be read is named on stderr, one line each, and left out; UserError naming
  each file when none can be read.
  """
  plots.check_image_path(out)
  config = read_run_config(workdir, data_dir)
  experiment = experiment_lib.build(config, splits=())
  images, names, problems = image_files.read(paths, experiment.dataset.info.image_shape, crop)
  if images is None:
    raise errors.UserError("Nothing drawn: no file given to --images is an image Pillow reads:"
                           + "".join(f"\n  {problem}" for problem in problems))
  for problem in problems:
    print(f"error: {problem} Drawing the other images.", file=sys.stderr)
  images = np.asarray(input_pipeline.pad_to_32(images))
  probabilities, maps, step = predict(experiment, workdir, images, step)
  class_names = experiment.dataset.class_names
  if class_names is None:
    print(f"note: {config.dataset!r} is not prepared in data_dir {config.data_dir}: classes are "
          "shown by number (give --data_dir for their names).", file=sys.stderr)
  plots.save_attention_grid(images, maps, out, class_names=class_names,
                            probabilities=probabilities,
                            row_names=[os.path.basename(n) for n in names])
  lines = [f"{path}: " + ", ".join(f"{plots.class_name(c, class_names)} {100 * p:.2f}%"
                                  for c, p in top)
           for path, top in zip(names, plots.top_classes(probabilities))]
  drawn = f"{len(names)} image{'s' * (len(names) > 1)}"
  return "\n".join([f"Wrote {out}: attention of {drawn} after step {step}."] + lines)
