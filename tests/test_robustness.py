"""FGSM: eps 0 is the clean evaluation, the perturbation stays within eps, the input gradient is
the loss's (finite differences, float64), and the robustness command on a tiny trained run."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from ltpa_jax import checkpoints
from ltpa_jax import errors
from ltpa_jax import experiment
from ltpa_jax import input_pipeline
from ltpa_jax import robustness
from ltpa_jax import steps
from ltpa_jax import train
from ltpa_jax import workdir as workdir_lib
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


def test_the_perturbation_is_eps_in_sign_within_the_pixel_range():
  """|x_adv - x| is eps where the result is not clipped (at most eps everywhere), in [0, 255],
  floats of the params' dtype, not rounded to integers."""
  model, _, state = test_train.setup()
  split = fakes.noise_split(4, seed=2)  # noise: many pixels at 0-2 and 253-255 get clipped
  x = jnp.asarray(split.images)
  state = calibrated(model, state, x)
  eps = 2.5
  adversarial = np.asarray(jax.jit(functools.partial(steps.fgsm, model, INFO))(
      state, x, jnp.asarray(split.labels), eps))
  assert adversarial.dtype == np.float32
  delta = adversarial - np.asarray(x, np.float32)
  inside = (adversarial > 0) & (adversarial < 255)
  assert np.abs(delta).max() <= eps and adversarial.min() >= 0 and adversarial.max() <= 255
  assert (np.abs(delta[inside]) == eps).mean() > 0.99  # sign(gradient) is 0 almost nowhere
  assert (adversarial != np.round(adversarial)).any()
  assert ((adversarial == 0) | (adversarial == 255)).any()  # clipped


def test_the_input_gradient_is_the_loss_derivative(x64):
  """The gradient FGSM takes the sign of, along a random direction, against a central finite
  difference of the summed loss in pixel units (float64, step 1e-4 pixels)."""
  model, _, state = test_train.setup(dtype=jnp.float64)
  split = fakes.colour_split(3, seed=3)
  x, labels = jnp.asarray(split.images, jnp.float64), jnp.asarray(split.labels)
  state = calibrated(model, state, x)
  loss = jax.jit(functools.partial(steps.pixel_loss, model, INFO, state, labels=labels))
  gradient = jax.jit(jax.grad(functools.partial(steps.pixel_loss, model, INFO, state),
                              argnums=0))(x, labels)
  direction = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
  h = 1e-4
  finite_difference = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
  np.testing.assert_allclose(float(jnp.vdot(gradient, direction)), float(finite_difference),
                             rtol=1e-6)


EPOCHS = 10  # 30 steps of lr 0.05 (xavier init): colour_split is learned in part


def untrained_run(config, workdir):
  """A run of `config` whose checkpoint is its initial state (step 0)."""
  workdir_lib.check_same_config(str(workdir), config)
  built = experiment.build(config, splits=())
  state = jax.jit(built.initial_state)(jax.random.key(0))
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    ckpt.save(0, steps.checkpoint_tree(state), jax.random.key(0))


def test_the_command_on_a_trained_and_an_untrained_run(fake_dataset, tmp_path, capsys):
  """A tiny attention model trained 10 epochs (30 steps, lr 0.05, xavier init) on colour_split
  (classes visible as colours) and the same model untrained, under eps 0, 4, 16; eps 0 gives
  exactly the run's own final evaluation (over a padded, masked batch).

  The trained run's top-1 error does not fall as eps grows, nor its loss. Measured (2-core CPU,
  jax 0.10.2, one core): top-1 74, 74, 86 %, top-5 40, 44, 58 % at eps 0, 4, 16 (chance: 90 %,
  50 %). With kaiming init (BN scale ~ N(0, 0.01)) the run hardly learned (top-1 86 % at eps 0),
  as tests/test_train.py notes for CIFAR-100.
  """
  trained, untrained = tmp_path / "att", tmp_path / "untrained"
  fake_dataset.update(num_epochs=EPOCHS, learning_rate=0.05, lr_boundaries_epochs=(),
                      eval_every_epochs=EPOCHS)
  fake_dataset.model.init_scheme = "xavier"
  train.train_and_evaluate(fake_dataset, str(trained))
  untrained_run(fake_dataset, untrained)
  capsys.readouterr()
  out = tmp_path / "curves.png"
  printed = robustness.measure([str(trained), str(untrained)], [0.0, 4.0, 16.0], str(out),
                               examples=3)
  print(printed)  # shown with pytest -s
  table, _, wrote = printed.partition("\n\n")
  assert table.splitlines()[0] == (f"| eps | {trained} top-1 | {trained} top-5 | {untrained} top-1 "
                                   f"| {untrained} top-5 |")
  assert [line.split(" | ")[0] for line in table.splitlines()[2:]] == ["| 0", "| 4", "| 16"]
  assert wrote.startswith(f"Wrote {trained / robustness.RESULT_FILE} (step {3 * EPOCHS}, 50 test "
                          "images)")
  with open(trained / robustness.RESULT_FILE) as f:
    result = json.load(f)
  with open(trained / "results.json") as f:
    final = json.load(f)["final"]
  assert (result["step"], result["dataset_label"], result["epsilons"]) == (
      3 * EPOCHS, "fake", [0, 4, 16])
  errors_by_eps = [r["top1_error"] for r in result["results"]]
  assert errors_by_eps[0] == final["test_top1_error"]  # eps 0: the training's own evaluation
  assert errors_by_eps[0] <= errors_by_eps[1] <= errors_by_eps[2], errors_by_eps
  assert [r["loss"] for r in result["results"]] == sorted(r["loss"] for r in result["results"])
  with open(untrained / robustness.RESULT_FILE) as f:
    assert json.load(f)["step"] == 0
  for path in (out, trained / robustness.EXAMPLES_FILE, untrained / robustness.EXAMPLES_FILE):
    with Image.open(path) as image:
      assert image.format == "PNG" and image.height > 3 * 100

  with pytest.raises(errors.UserError, match=f"{trained / robustness.RESULT_FILE}, "
                     f"{trained / robustness.EXAMPLES_FILE} exists already: give --overwrite"):
    robustness.measure([str(trained)], [0.0, 1.0], str(tmp_path / "other.png"))
  no_checkpoint = tmp_path / "no_checkpoint"
  workdir_lib.check_same_config(str(no_checkpoint), fake_dataset)  # config.json only
  with pytest.raises(errors.UserError, match="No checkpoint in .*: train the run first"):
    robustness.measure([str(no_checkpoint)], [0.0], str(tmp_path / "x.png"))


@pytest.mark.parametrize("values, message", [
    (["1", "-2"], "--epsilons must be numbers from 0 to 255 (pixel units), got -2"),
    (["nan"], "--epsilons must be numbers from 0 to 255 (pixel units), got nan"),
    (["1", "x"], "--epsilons must be comma-separated numbers (pixel units, 0-255), got 1,x"),
    (["2", "2.0"], "--epsilons lists an eps twice (2,2.0): give each once."),
])
def test_bad_epsilons_are_user_errors(values, message):
  with pytest.raises(errors.UserError) as error:
    robustness.parse_epsilons(values)
  assert str(error.value).startswith(message)


def test_a_workdir_without_config_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match=r"No config\.json in .*: give the workdir of a "
                     r"training run"):
    robustness.measure([str(tmp_path)], [0.0], str(tmp_path / "out.png"))
  assert not (tmp_path / "out.png").exists()
