"""VGG19-att ((VGG-att3)-concat-pc), sigmoid, separate u, with the reference author's later recipe.

    python train.py --config configs/vgg19_att_sigmoid.py --workdir runs/vgg19_att_sigmoid \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, parametrised compatibility with one u per layer,
SIGMOID normalisation (g_s = spatial mean of a * l_s), concatenated descriptors.
Recipe (the later reference code): b2 = 2 convs, SGD momentum 0.9, weight decay 5e-5 (coupled),
lr 0.1 x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
Published (PyTorch, official CIFAR-100 test split, 3 runs): top-1 error 25.2, 25.94, 25.24.
A prior JAX probe of this recipe (not a measurement of this code) on CIFAR-100 (re-split), bf16,
one H100, one run: top-1 / top-5 error 25.20/6.64 (at epoch 90).
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att_softmax")
  config.model.normalisation = "sigmoid"
  return config
