"""Training and evaluation on CPU with a tiny-width model."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from configs import tiny
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import train
from ltpa_jax import visualize
from tests import exact
from tests import fakes
from tests import test_summaries

INFO = fakes.INFO
fake_split = fakes.colour_split


def setup(lr=0.05, **model_kwargs):
  model = models.VGGAttention(num_classes=10, width_multiplier=1 / 16, **model_kwargs)
  tx = optim.sgd(lr, 0.9, 5e-4)
  state = jax.jit(functools.partial(train.initial_state, model, tx, image_shape=(32, 32, 3)))(
      jax.random.key(0))
  return model, tx, state




def test_chunk_shapes_cover_every_example_once():
  assert train.chunk_shapes(50_000, 64, 0) == [(781, 64), (1, 16)]
  assert train.chunk_shapes(50_000, 64, 100) == [(100, 64), (81, 64), (1, 16)]
  assert train.chunk_shapes(128, 64, 1) == [(1, 64)]
  assert train.chunk_shapes(10, 64, 0) == [(1, 10)]


def test_a_pass_trains_the_remainder_batch_and_splitting_into_calls_changes_nothing(x64):
  """One scan or calls of 2 steps: other compiled programs, the same maths (float64)."""
  model, tx, state = setup(dtype=jnp.float64)
  data = train.to_device(fake_split(70))
  shapes = {*train.chunk_shapes(70, 16, 0), *train.chunk_shapes(70, 16, 2)}
  assert shapes == {(4, 16), (2, 16), (1, 6)}
  compiled = train.compile_train_steps(model, tx, INFO, state, data, jax.random.key(0), shapes)
  run = lambda steps_per_call: train.train_pass(
      compiled, 16, steps_per_call, jax.tree.map(jnp.copy, state), data, jax.random.key(5))
  one_scan, metrics, steps = run(0)
  assert int(one_scan.step) == steps == 5  # 4 x 16 + 6 examples
  assert int(metrics.loss.count) == 70
  two_per_call, two_metrics, _ = run(2)
  exact.assert_trees_close(two_per_call, one_scan, atol=exact.noise_floor(one_scan))
  exact.assert_trees_close(two_metrics.compute(), metrics.compute())


def test_evaluate_counts_every_example_and_matches_a_direct_computation(x64):
  """Batched, padded and masked, or all at once: the same maths (float64)."""
  model, _, state = setup(dtype=jnp.float64)
  split = fake_split(203, seed=1)  # 3 batches of 100, the last padded and masked
  metrics = jax.jit(functools.partial(train.evaluate, model, INFO, 100))(
      state, train.to_device(split)).compute()
  logits, _ = jax.jit(lambda s, x: model.apply(
      {"params": s.params, "batch_stats": s.batch_stats}, x))(
          state, (split.images / 255.0 - 0.5) / 0.25)
  logits = np.asarray(logits)
  top5 = np.argsort(-logits, -1)[:, :5]
  log_probs = np.asarray(jax.nn.log_softmax(logits))
  exact.assert_trees_close(metrics, {
      "accuracy": (logits.argmax(-1) == split.labels).mean(),
      "top5_accuracy": (top5 == split.labels[:, None]).any(-1).mean(),
      "loss": -log_probs[np.arange(203), split.labels].mean()})


def test_fits_a_small_fixed_batch():
  """100 augmented steps on 16 images take the loss from ln(10) to about 0.3 (bound 0.6)."""
  model, tx, state = setup(lr=0.02)
  split = fake_split(16, seed=2)
  images, labels = jnp.asarray(split.images), jnp.asarray(split.labels)
  step = jax.jit(functools.partial(train.train_step, model, tx, INFO))
  losses = []
  for i in range(100):
    state, metrics = step(state, images, labels, jax.random.key(i))
    losses.append(float(metrics.compute()["loss"]))
  assert losses[0] > 2.0 and np.mean(losses[-10:]) < 0.6, (losses[0], losses[-10:])


def test_train_and_evaluate_writes_the_run_and_a_finished_run_is_not_retrained(
    fake_dataset, tmp_path):
  config = fake_dataset
  run = train.train_and_evaluate(config, str(tmp_path))
  assert run["final"]["epoch"] == 2 and run["dataset_label"] == "fake"
  assert run["final"]["test_top5_error"] <= run["final"]["test_top1_error"] <= 100
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "6"]  # steps: 96 / 32 per epoch
  assert {"config.json", "history.json", "results.json", "learning_curves.png",
          "attention_train.png", "attention_test.png"} <= set(os.listdir(tmp_path))
  with open(tmp_path / "history.json") as f:
    history = json.load(f)
  assert [h["learning_rate"] for h in history] == pytest.approx([0.1, 0.01])  # boundary: epoch 1
  events = test_summaries.read_events(tmp_path / "tensorboard")
  assert [v for _, v in events["scalars"]["test_top1_error"]] == pytest.approx(
      [h["test_top1_error"] for h in history])
  assert {"train_loss", "train_error", "learning_rate", "images_per_second",
          "test_loss", "test_top5_error"} <= set(events["scalars"])
  assert [step for step, _ in events["images"]["attention/test"]] == [2]  # the last epoch
  assert "normalisation" in events["text"]["config/text_summary"][0][1]
  for name in ("learning_curves.png", "attention_test.png"):
    with PIL.Image.open(tmp_path / name) as image:
      assert image.format == "PNG" and image.width >= 400 and image.height >= 300
  assert train.train_and_evaluate(config, str(tmp_path)) == run  # finished: read back
  out = tmp_path / "chosen.png"
  assert "after step 6" in visualize.render(str(tmp_path), str(out), [3, 1, 4])
  with PIL.Image.open(out) as image:
    assert image.format == "PNG" and image.width > 100


def test_tiny_model_learns_cifar100_resplit(cifar100_data_dir, tmp_path):
  """300 steps of batch 64 at lr 0.1 on real CIFAR-100 (re-split), evaluated on all 10,000 test
  images.

  Chance is 1% top-1 and 5% top-5; with 10,000 test images their standard deviations are 0.1 and
  0.22 pp. The bounds, top-1 accuracy > 2% and top-5 accuracy > 8%, are 10 and 14 standard
  deviations above chance. Measured here (CPU, jax 0.10.2): 2.45% / 12.57% (errors 97.55 / 87.43).
  """
  config = tiny.get_config()
  config.data_dir = cifar100_data_dir
  config.batch_size = 64
  config.train_examples = 300 * 64
  config.num_epochs = 1
  config.lr_boundaries_epochs = ()  # constant lr 0.1
  config.eval_batch_size = 1000
  run = train.train_and_evaluate(config, str(tmp_path))
  assert run["dataset_label"] == "CIFAR-100 (re-split)"
  assert run["final"]["test_top1_error"] < 98.0
  assert run["final"]["test_top5_error"] < 92.0
