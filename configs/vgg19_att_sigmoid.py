"""VGG19-att ((VGG-att3)-concat-pc), sigmoid, separate u, with the reference author's later recipe.

    python train.py --config configs/vgg19_att_sigmoid.py --workdir runs/vgg19_att_sigmoid \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, parametrised compatibility with one u per layer,
SIGMOID normalisation (g_s = spatial mean of a * l_s), concatenated descriptors.
Recipe: configs/vgg19_att_softmax.py's (the code at 845f1d4: b2 = 3 convs, weight decay 5e-5,
batch 128), rows published at 18d4f1f.
Published (PyTorch, official CIFAR-100 test split, 3 runs, best epoch on the test set): top-1 /
top-5 error 25.2/6.52, 25.94/6.71, 25.24/6.75.
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att_softmax")
  config.model.normalisation = "sigmoid"
  return config
