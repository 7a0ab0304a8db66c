"""FGSM: the input gradient is the loss's (finite differences, float64) and the perturbation eps
in its sign, within the pixel range; the robustness command on a tiny run that learned
Fashion-MNIST (error not falling as eps grows, eps 0 exactly the run's own evaluation); mistakes."""

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from ltpa_jax.base import devices
from ltpa_jax.base import errors
from ltpa_jax.data import input_pipeline
from ltpa_jax.analysis import fgsm
from ltpa_jax.core import steps
from ltpa_jax.rundir import workdir as workdir_lib
from tests import fakes
from tests import test_train

INFO = fakes.INFO


def calibrated(model, state, images):
  """`state` with the running BatchNorm statistics of `images` (BatchNorm's momentum 0.1 undone).

  A fresh model's statistics (mean 0, variance 1) give eval-mode logits that hardly depend on the
  input (their spread over images measured ~1e-9): FGSM would have almost no gradient to follow.
  """
  _, updates = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                           input_pipeline.normalise(images, INFO.mean, INFO.std,
                                                    steps.params_dtype(state.params)),
                           train=True, mutable=["batch_stats"])
  return state.replace(batch_stats=jax.tree.map(lambda new, old: (new - 0.9 * old) / 0.1,
                                                updates["batch_stats"], state.batch_stats))


@pytest.mark.slow
def test_fgsm_moves_each_pixel_by_eps_along_the_loss_gradient(x64):
  """In float64, one compiled program: the input gradient, along a random direction, equals a
  central finite difference of the summed loss in pixel units (step 1e-4 pixels); the FGSM image
  is clip(x + eps * sign(that gradient), 0, 255): |x_adv - x| at most eps, exactly eps where not
  clipped, floats of the params' dtype, not rounded to integers."""
  model, _, state = test_train.setup(dtype=jnp.float64)
  split = fakes.colour_split(3, seed=3)  # colours near black or white: pixels get clipped
  x, labels = jnp.asarray(split.images), jnp.asarray(split.labels)
  pixels = x.astype(jnp.float64)
  direction = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
  eps, h = 2.5, 1e-4

  @jax.jit  # one program: each compile of even a tiny VGG19 takes seconds
  def attack_and_probe(state):
    state = calibrated(model, state, x)
    loss = functools.partial(steps.pixel_loss, model, INFO, state, labels=labels)
    return (steps.fgsm(model, INFO, state, x, labels, eps), jax.grad(loss)(pixels),
            loss(pixels + h * direction), loss(pixels - h * direction))

  adversarial, gradient, loss_plus, loss_minus = jax.device_get(attack_and_probe(state))
  np.testing.assert_allclose(np.vdot(gradient, direction), (loss_plus - loss_minus) / (2 * h),
                             rtol=1e-6)
  assert adversarial.dtype == np.float64
  assert (np.sign(gradient) != 0).mean() > 0.99  # the attack moves almost every pixel
  np.testing.assert_array_equal(adversarial, np.clip(split.images + eps * np.sign(gradient), 0,
                                                     255))
  assert np.abs(adversarial - split.images).max() == eps
  assert ((adversarial == 0) | (adversarial == 255)).any()  # clipped
  assert (adversarial != np.round(adversarial)).any()


TEST_IMAGES = 100  # the first 100 (--test_images): each attacked image costs a backward pass


def copied_run(learned_fashion_mnist_run, tmp_path):
  """A copy of the session's learned run (its workdir stays as trained) and its results."""
  learned, results = learned_fashion_mnist_run
  shutil.copytree(learned, tmp_path / "run")
  return tmp_path / "run", results


@pytest.mark.slow
def test_the_command_on_a_run_that_learned(learned_fashion_mnist_run, tmp_path, capsys):
  """The tiny attention model that learned Fashion-MNIST (conftest.py) under eps 0, 4, 16 on its
  first 100 test images: the top-1 error and the loss do not fall as eps grows.

  Measured (2-core CPU, jax 0.10.2): top-1 49, 62, 86 %, top-5 1, 1, 3 % at eps 0, 4, 16 (too
  few top-5 mistakes to bound). The run's own evaluation, on all 10,000: top-1 44.93 %.
  """
  workdir, _ = copied_run(learned_fashion_mnist_run, tmp_path)
  capsys.readouterr()
  out = tmp_path / "curves.png"
  printed = fgsm.measure([str(workdir)], [0.0, 4.0, 16.0], str(out), examples=2,
                               test_images=TEST_IMAGES)
  assert capsys.readouterr().out.startswith(f"Attacking on {devices.describe('float32', 1)}.\n")
  print(printed)  # shown with pytest -s
  table, _, wrote = printed.partition("\n\n")
  assert table.splitlines()[0] == f"| eps | {workdir} top-1 | {workdir} top-5 |"
  assert [line.split(" | ")[0] for line in table.splitlines()[2:]] == ["| 0", "| 4", "| 16"]
  assert wrote.startswith(f"Wrote {workdir / fgsm.RESULT_FILE} (step 200, {TEST_IMAGES} "
                          "test images)")
  with open(workdir / fgsm.RESULT_FILE) as f:
    result = json.load(f)
  assert (result["step"], result["dataset_label"], result["test_images"], result["epsilons"]) == (
      200, "Fashion-MNIST", TEST_IMAGES, [0, 4, 16])
  for key in ("top1_error", "loss"):
    by_eps = [r[key] for r in result["results"]]
    assert by_eps == sorted(by_eps), (key, by_eps)
  assert result["results"][0]["top1_error"] < result["results"][-1]["top1_error"]
  for path in (out, workdir / fgsm.EXAMPLES_FILE):
    with Image.open(path) as image:
      assert image.format == "PNG" and image.height > 2 * 100
  with pytest.raises(errors.UserError, match=f"{workdir / fgsm.RESULT_FILE}, "
                     f"{workdir / fgsm.EXAMPLES_FILE} exists already: give --overwrite"):
    fgsm.measure([str(workdir)], [0.0, 1.0], str(tmp_path / "other.png"))


@pytest.mark.slow
def test_an_unfinished_run_is_evaluated_saying_so(learned_fashion_mnist_run, tmp_path, capsys):
  """The learned run as if stopped after epoch 1: its checkpoint of step 100 of 200."""
  workdir, _ = copied_run(learned_fashion_mnist_run, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "200")
  capsys.readouterr()
  printed = fgsm.measure([str(workdir)], [0.0], str(tmp_path / "curves.png"), examples=2,
                               test_images=TEST_IMAGES)
  where, note = capsys.readouterr().out.splitlines()
  assert where.startswith("Attacking on 1 x ")
  assert note == (f"{workdir} is an unfinished run: evaluating its latest checkpoint, step 100 "
                  "(end of epoch 1 of 2), of 200 steps.")
  assert f"Wrote {workdir / fgsm.RESULT_FILE} (step 100, " in printed


@pytest.mark.slow
def test_eps_0_on_every_test_image_is_the_runs_own_evaluation(learned_fashion_mnist_run,
                                                               tmp_path):
  """`steps.evaluate` as the training's final evaluation ran it, on the same state and images:
  the same numbers, bitwise (~10 s on 2 CPU cores, mostly the 10,000 images)."""
  workdir, results = copied_run(learned_fashion_mnist_run, tmp_path)
  fgsm.measure([str(workdir)], [0.0], str(tmp_path / "curves.png"), examples=2)
  with open(workdir / fgsm.RESULT_FILE) as f:
    result = json.load(f)
  final = results["final"]
  assert result["test_images"] == 10_000
  assert result["results"] == [{"eps": 0, "top1_error": final["test_top1_error"],
                                "top5_error": final["test_top5_error"],
                                "loss": final["test_loss"]}]


def test_the_table_puts_the_runs_side_by_side():
  runs = {name: {"results": [{"eps": eps, "top1_error": error, "top5_error": error / 4}
                             for eps, error in ((0, 10 + i), (0.5, 20 + i))]}
          for i, name in enumerate(("runs/a", "runs/b"))}
  assert fgsm.table(runs).splitlines() == [
      "| eps | runs/a top-1 | runs/a top-5 | runs/b top-1 | runs/b top-5 |",
      "| ---: | ---: | ---: | ---: | ---: |",
      "| 0 | 10.00 | 2.50 | 11.00 | 2.75 |",
      "| 0.5 | 20.00 | 5.00 | 21.00 | 5.25 |"]


@pytest.mark.parametrize("values, message", [
    (["1", "-2"], "--epsilons must be numbers from 0 to 255 (pixel units), got -2"),
    (["nan"], "--epsilons must be numbers from 0 to 255 (pixel units), got nan"),
    (["1", "x"], "--epsilons must be comma-separated numbers (pixel units, 0-255), got 1,x"),
    (["2", "2.0"], "--epsilons lists an eps twice (2,2.0): give each once."),
])
def test_bad_epsilons_are_user_errors(values, message):
  with pytest.raises(errors.UserError) as error:
    fgsm.parse_epsilons(values)
  assert str(error.value).startswith(message)


def test_a_workdir_without_config_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match=r"No config\.json in .*: give the workdir of a "
                     r"training run"):
    fgsm.measure([str(tmp_path)], [0.0], str(tmp_path / "out.png"))
  assert not (tmp_path / "out.png").exists()


def test_a_run_without_a_checkpoint_is_a_user_error(fake_dataset, tmp_path):
  workdir_lib.check_same_config(str(tmp_path), fake_dataset)  # config.json only
  with pytest.raises(errors.UserError, match="No checkpoint in .*: train the run first"):
    fgsm.measure([str(tmp_path)], [0.0], str(tmp_path / "out.png"))


@pytest.mark.parametrize("examples, test_images, flag", [(0, None, "examples"),
                                                         (4, 0, "test_images")])
def test_counts_below_one_are_user_errors(tmp_path, examples, test_images, flag):
  with pytest.raises(errors.UserError, match=f"--{flag} must be at least 1, got 0"):
    fgsm.measure([str(tmp_path)], [0.0], str(tmp_path / "out.png"), examples=examples,
                       test_images=test_images)
