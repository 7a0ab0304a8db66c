"""VGG19-att ((VGG-att3)-concat-pc), softmax, separate u, with the reference author's later recipe.

    python train.py --config configs/vgg19_att_softmax.py --workdir runs/vgg19_att_softmax \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, parametrised compatibility with one u per layer,
SOFTMAX normalisation (g_s = sum of a * l_s), concatenated descriptors.
Recipe (the later reference code): b2 = 2 convs, SGD momentum 0.9, weight decay 5e-5 (coupled),
lr 0.1 x0.1 at epochs 50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
Published (PyTorch, official CIFAR-100 test split, 3 runs): top-1 error 28.2, 27.17, 27.29.
A prior JAX probe of this recipe (not a measurement of this code) on CIFAR-100 (re-split), bf16,
one H100, one run: top-1 / top-5 error 27.31/7.69.
"""

from ltpa_jax import default_config


def get_config():
  # default_config.py holds exactly this recipe: softmax, separate u, pc, concat, l1-l3 before
  # pooling, b2 = 2 convs, weight decay 5e-5.
  return default_config.get_config()
