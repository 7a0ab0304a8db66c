"""VGG19-att (sigmoid, shared u) on Fashion-MNIST, with the recipe of configs/vgg19_att.py.

    python train.py --config configs/fashion_mnist_att.py --workdir runs/fashion_mnist_att \
        --config.manual_dir=../shared/data/fashion_mnist

The first run prepares fashion_mnist in the TFDS data_dir (--config.data_dir; default
~/tensorflow_datasets) from the four official archives in manual_dir, without TensorFlow.
Data: 60,000 train / 10,000 test 28x28x1 images, 10 classes, zero-padded to 32x32 on the device.
Model and recipe as configs/vgg19_att.py (reference table: b2 = 3 convs, weight decay 1e-4, lr 0.1
x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip), with 1 input channel, 10 classes.
Published baselines (Zalando's Fashion-MNIST benchmark, test accuracy; other models and recipes):
VGG16 93.5%, ResNet18 94.9%, WRN-28-10 95.9%, WRN40-4 96.7%. No result of this config is known.
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att")
  config.dataset = "fashion_mnist"
  return config
