"""A tiny-width model for CPU tests and smoke runs (not a recipe).

    python train.py --config configs/tiny.py --workdir runs/tiny \
        --config.data_dir=../shared/tensorflow_datasets
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.width_multiplier = 1 / 16  # widths 4, 8, 16, 32, 32, 32; g has 32 features
  config.num_epochs = 2
  config.lr_boundaries_epochs = (1,)
  config.batch_size = 32
  config.eval_batch_size = 500
  config.steps_per_call = 1
  return config
