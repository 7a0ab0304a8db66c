"""VGG19 (no attention) with the recipe of the reference table's runs.

    python train.py --config configs/vgg19.py --workdir runs/vgg19 \
        --config.data_dir=../shared/tensorflow_datasets

Recipe: b2 = 3 convs, SGD momentum 0.9, weight decay 1e-4 (coupled, as torch.optim.SGD), lr 0.1
x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
Expected (PyTorch reference table at 1b1af30, official CIFAR-100 test split, 3 runs, best epoch
on the test set): top-1 / top-5 error 25.89/7.17, 26.35/6.93, 26.14/7.37. A JAX probe with b2 = 2
convs, wd 5e-5, batch 64 on CIFAR-100 (re-split), bf16, one H100: 26.57/7.61.
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.attention = False
  config.model.b2_convs = 3
  config.weight_decay = 1e-4
  return config
