"""VGG19 (no attention) with the reference author's later recipe.

    python train.py --config configs/vgg19_later.py --workdir runs/vgg19_later \
        --config.data_dir=../shared/tensorflow_datasets

Recipe (the later reference code): b2 = 2 convs, SGD momentum 0.9, weight decay 5e-5 (coupled, as
torch.optim.SGD), lr 0.1 x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
Published (PyTorch, official CIFAR-100 test split, 3 runs): top-1 error 26.2, 26.84, 27.39.
A prior JAX probe of this recipe (not a measurement of this code) on CIFAR-100 (re-split), bf16,
one H100, one run: top-1 / top-5 error 26.57/7.61.
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()  # the later recipe: b2 = 2 convs, weight decay 5e-5
  config.model.attention = False
  return config
