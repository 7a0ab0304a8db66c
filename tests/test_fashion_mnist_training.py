"""A tiny configs/fashion_mnist_att.py learns real Fashion-MNIST on CPU, end to end."""

import pytest

from configs import fashion_mnist_att


def learning_config(data_dir: str, seed: int = 0):
  """The setup of the test below (benchmarks/learning_spread.py measures it over seeds), trained
  once per session by conftest.py's `learned_fashion_mnist_run`."""
  config = fashion_mnist_att.get_config()
  config.data_dir = data_dir
  config.model.width_multiplier = 1 / 16
  config.model.init_scheme = "xavier"  # BN scale ~ U(0, 1); with kaiming, seed 1 stayed at chance
  config.steps_per_call = 1  # XLA:CPU runs conv weight gradients far slower inside loops.
  config.batch_size = 32
  config.train_examples = 100 * 32
  config.num_epochs = 2
  config.lr_boundaries_epochs = (1,)
  config.eval_every_epochs = 2
  config.attention_images = 2
  config.seed = seed
  return config


@pytest.mark.slow
def test_tiny_attention_model_learns_fashion_mnist(learned_fashion_mnist_run):
  """fashion_mnist_att.py at width 1/16, xavier init: 2 passes of 100 steps of batch 32 over the
  first 3,200 training images (lr 0.1, then 0.01), evaluated on all 10,000 test images.

  Chance is 90% top-1 and 50% top-5 error. With kaiming init (BN scale ~ N(0, 0.01)) seeds 0-2
  gave 58.65, 90.00 (chance) and 63.24 top-1 error: a coin flip. Measured with xavier init
  (benchmarks/learning_spread.py --test fashion_mnist, 2-core CPU, jax 0.10.2), top-1 / top-5
  error: seeds 0-4 on both cores 28.37-49.16 / 0.88-2.12; seeds 0-4 on one core (`taskset`)
  29.93-61.96 / 1.06-9.12 (seed 3 the worst; seed 4: 32.59 / 1.61). The bounds, 75 and 29, lie about halfway between
  chance and the worst of those runs.
  """
  _, run = learned_fashion_mnist_run  # trained once per session (conftest.py)
  assert run["dataset"] == "fashion_mnist" and run["final"]["epoch"] == 2
  assert run["final"]["test_top1_error"] < 75.0
  assert run["final"]["test_top5_error"] < 29.0
