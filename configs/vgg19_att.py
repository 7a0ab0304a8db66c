"""VGG19-att ((VGG-att3)-concat-pc) with the recipe of the reference table's runs.

    python train.py --config configs/vgg19_att.py --workdir runs/vgg19_att \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, parametrised compatibility with ONE u shared by the
three layers, SIGMOID normalisation (g_s = spatial mean of a * l_s), concatenated descriptors.
Recipe: b2 = 3 convs, SGD momentum 0.9, weight decay 1e-4 (coupled), lr 0.1 x0.1 at epochs
50/70/90, batch 64, 100 epochs, crop+flip, kaiming init.
Expected (PyTorch reference table at 1b1af30, official CIFAR-100 test split, 3 runs, best epoch
on the test set): top-1 / top-5 error 24.60/6.32, 24.42/6.21, 24.57/6.22. A JAX probe of the
sigmoid variant with b2 = 2, wd 5e-5, batch 64, separate u on CIFAR-100 (re-split), bf16, one
H100: 25.20/6.64.
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()
  config.model.attention = True
  config.model.normalisation = "sigmoid"
  config.model.compatibility = "pc"
  config.model.shared_u = True
  config.model.aggregation = "concat"
  config.model.attention_position = "before"
  config.model.attended_layers = (1, 2, 3)
  config.model.b2_convs = 3
  config.weight_decay = 1e-4
  return config
