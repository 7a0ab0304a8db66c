"""VGG19-att (sigmoid, shared u) on CIFAR-10, with the recipe of configs/vgg19_att.py.

    python train.py --config configs/cifar10_att.py --workdir runs/cifar10_att

The first run prepares cifar10 (official split, 50,000 train / 10,000 test) in the TFDS data_dir
(--config.data_dir; default ~/tensorflow_datasets), without TensorFlow, from
cifar-10-binary.tar.gz in --config.manual_dir or downloaded.
Model and recipe as configs/vgg19_att.py (reference table: b2 = 3 convs, weight decay 1e-4, lr 0.1
x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip), with 10 classes and the CIFAR-10
train-split normalisation statistics. No published result of this recipe on CIFAR-10 is known
(the paper's CIFAR-10 results come from its own recipe).
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att")
  config.dataset = "cifar10"
  return config
