"""VGG19-att ((VGG-att3)-concat-pc), sigmoid, ONE u shared by the three layers, later recipe.

    python train.py --config configs/vgg19_att_sigmoid_shared.py \
        --workdir runs/vgg19_att_sigmoid_shared --config.data_dir=../shared/tensorflow_datasets

configs/vgg19_att_sigmoid.py with a shared compatibility vector u. Recipe: the code at 845f1d4
(b2 = 3 convs, weight decay 5e-5, batch 128); rows published at fd6aad8.
Published (PyTorch, official CIFAR-100 test split, 3 runs, best epoch on the test set): top-1 /
top-5 error 26.98/7.55, 27.56/7.56, 26.64/7.45.
"""

from ltpa_jax.default_config import sibling


def get_config():
  config = sibling(__file__, "vgg19_att_sigmoid")
  config.model.shared_u = True
  return config
