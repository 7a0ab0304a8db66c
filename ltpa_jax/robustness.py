"""Robustness of trained runs to the fast gradient sign method (FGSM): test error against eps.

    python -m ltpa_jax.robustness --workdir runs/vgg19 --workdir runs/vgg19_att \\
        --epsilons 0,1,2,4,8 --out robustness.png

Under each run's latest checkpoint, every test image x (pixel units, 0-255, before
normalisation) is replaced by clip(x + eps * sign(d loss / dx), 0, 255), the gradient of the
model in eval mode (`steps.fgsm`), and the run is evaluated on those images. Prints a markdown
table of top-1 / top-5 error against eps, the runs side by side, and writes per run
<workdir>/robustness.json and <workdir>/fgsm_examples.png (a few test images, clean and attacked
at the largest eps, with their predicted classes), and the error curves of every run to --out.
An existing output is refused unless --overwrite. An unfinished run is evaluated at its
latest checkpoint, with a line saying so. Runs with and without attention (linear or
grid gates) are accepted. --test_images N evaluates the first N test images only: FGSM costs a
backward pass per image and eps, several times an evaluation's.
"""

from absl import flags

from ltpa_jax import cli
from ltpa_jax.analysis import fgsm


def define_flags(flag_values: flags.FlagValues):
  flags.DEFINE_multi_string("workdir", None, "A run's workdir (config.json, checkpoints); repeat "
                            "the flag for several runs.", flag_values=flag_values)
  flags.DEFINE_list("epsilons", ["0", "1", "2", "4", "8"],
                    "Comma-separated FGSM eps, in pixel units (0-255).", flag_values=flag_values)
  flags.DEFINE_string("out", "robustness.png", "Image file of the error curves (.png, .pdf, ...).",
                      flag_values=flag_values)
  flags.DEFINE_integer("examples", 4, "Test images drawn in each run's fgsm_examples.png.",
                       flag_values=flag_values)
  flags.DEFINE_integer("test_images", None, "Evaluate on the first N test images only (default: "
                       "all): a quicker estimate, FGSM costs a backward pass per image and eps.",
                       flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir, if not the runs'.",
                      flag_values=flag_values)
  flags.DEFINE_bool("overwrite", False, "Replace existing robustness.json, fgsm_examples.png and "
                    "--out files.", flag_values=flag_values)
  flags.mark_flag_as_required("workdir", flag_values=flag_values)


@cli.command(define_flags)
def main(call: cli.Call):
  f = call.flags
  print(fgsm.measure(f.workdir, fgsm.parse_epsilons(f.epsilons), f.out, f.examples, f.data_dir,
                     f.overwrite, f.test_images))


if __name__ == "__main__":
  main.run()
