"""Renders attention maps and predictions of a run's checkpoint, for test images or your own.

    python -m ltpa_jax.visualize --workdir runs/vgg19_att --out attention.png --indices 0,1,2,3
    python -m ltpa_jax.visualize --workdir runs/vgg19_att --images photo1.jpg photo2.png --crop
"""

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import attention
from ltpa_jax.base import errors


def define_flags(flag_values: flags.FlagValues):
  flags.DEFINE_string("workdir", None, "A run's workdir (holds config.json, checkpoints).",
                      flag_values=flag_values)
  flags.DEFINE_string("out", "attention.png", "Image file to write (.png, .pdf, ...).",
                      flag_values=flag_values)
  flags.DEFINE_list("indices", [str(i) for i in range(8)], "Test image indices.",
                    flag_values=flag_values)
  flags.DEFINE_multi_string(
      "images", None, "Your own image files (any format Pillow reads), instead of test images; "
      "repeat the flag or list them after it: --images a.jpg b.png.", flag_values=flag_values)
  flags.DEFINE_bool("crop", False, "With --images: centre-crop each image to the model's aspect "
                    "before resizing it (default: stretch it).", flag_values=flag_values)
  flags.DEFINE_integer("step", None, "Checkpoint (SGD step; default: the latest).",
                       flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir, if not the run's.",
                      flag_values=flag_values)
  flags.mark_flag_as_required("workdir", flag_values=flag_values)


def _check_images(call: cli.Call) -> list[str]:
  """The image files: --images, and the arguments after it (--images a.jpg b.png)."""
  if call.args and not call.flags.images:
    raise errors.UserError(f"Unexpected arguments {call.args}: give image files after --images.")
  images = (call.flags.images or []) + call.args
  if images and call.flags["indices"].present:
    raise errors.UserError("Give --images or --indices, not both.")
  return images


@cli.command(define_flags, args="image files, after --images")
def main(call: cli.Call):
  f = call.flags
  images = _check_images(call)
  if images:
    print(attention.render_images(f.workdir, f.out, images, f.crop, f.step, f.data_dir))
  else:
    print(attention.render(f.workdir, f.out, cli.int_list(f["indices"]), f.step, f.data_dir))


if __name__ == "__main__":
  main.run()
