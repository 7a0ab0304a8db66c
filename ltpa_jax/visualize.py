"""Renders attention maps of a run's checkpoint for chosen test images.

    python -m ltpa_jax.visualize --workdir runs/vgg19_att --out attention.png --indices 0,1,2,3
"""

import functools
import os

from absl import flags
import jax
import numpy as np

from ltpa_jax import checkpoints
from ltpa_jax import cli
from ltpa_jax import datasets
from ltpa_jax import errors
from ltpa_jax import plots
from ltpa_jax import train
from ltpa_jax import workdir as workdir_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (holds config.json, checkpoints).")
_OUT = flags.DEFINE_string("out", "attention.png", "Image file to write (.png, .pdf, ...).")
_INDICES = flags.DEFINE_list("indices", [str(i) for i in range(8)], "Test image indices.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint (SGD step; default: the latest).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir, if not the run's.")


def render(workdir: str, out: str, indices, step=None, data_dir=None) -> str:
  """Writes the attention grid of test images `indices` under the checkpoint of SGD `step`."""
  plots.check_image_path(out)
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if not os.path.isfile(path):
    raise errors.UserError(f"No {workdir_lib.CONFIG_FILE} in {workdir}: give the workdir of a "
                           "training run.")
  config = workdir_lib.read_config(path)
  if not config.model.attention:
    raise errors.UserError(f"The run in {workdir} has no attention (config.model.attention="
                           "False): give the workdir of a run of an attention config, e.g. "
                           "configs/vgg19_att.py.")
  data_dir = data_dir or config.data_dir
  info = datasets.dataset_info(config.dataset)
  test = datasets.load(config.dataset, data_dir, config.manual_dir)["test"]
  outside = [i for i in indices if not 0 <= i < len(test.labels)]
  if outside:
    raise errors.UserError(f"Test images {outside} do not exist: the test split has "
                           f"{len(test.labels)} images, 0 to {len(test.labels) - 1}.")
  model, _, target = train.state_template(config, info)
  with checkpoints.CheckpointManager(workdir) as ckpt:
    saved, _, step = ckpt.restore(step, target, jax.random.key(0))
  state = saved["state"]
  images, labels = train.fixed_examples(
      datasets.Split(test.images[np.asarray(indices)], test.labels[np.asarray(indices)]),
      len(indices))
  maps = jax.jit(functools.partial(train.attention_maps, model, info))(state, images)
  plots.save_attention_grid(images, maps, out, labels, datasets.class_names(config.dataset,
                                                                             data_dir))
  return f"Wrote {out}: attention of test images {list(indices)} after step {step}."


def main(argv):
  del argv
  print(render(_WORKDIR.value, _OUT.value, cli.int_list(_INDICES), _STEP.value, _DATA_DIR.value))


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  cli.run(main)
