"""VGG19-att ((VGG-att3)-concat-pc), softmax, separate u, with the reference author's later recipe.

    python train.py --config configs/vgg19_att_softmax.py --workdir runs/vgg19_att_softmax \
        --config.data_dir=../shared/tensorflow_datasets

Attention over l1, l2, l3 before pooling, parametrised compatibility with one u per layer,
SOFTMAX normalisation (g_s = sum of a * l_s), concatenated descriptors.
Recipe of the code that produced these rows (iversonicter/Learn-to-pay-attention, main.py at
399c726/845f1d4, model/vgg19.py at 845f1d4; rows published at 18d4f1f): b2 = 3 convs, SGD momentum
0.9, weight decay 5e-5 (coupled), lr 0.1 x0.1 at epochs 50/70/90, batch 128 (main.py's default;
its README says 64), 100 epochs, crop+flip, kaiming init.
Published (PyTorch, official CIFAR-100 test split, 3 runs, best epoch on the test set): top-1 /
top-5 error 28.2/7.63, 27.17/7.49, 27.29/7.57.
"""

from ltpa_jax import default_config


def get_config():
  config = default_config.get_config()  # softmax, separate u, pc, concat, l1-l3 before pooling
  config.model.b2_convs = 3
  config.batch_size = 128
  config.weight_decay = 5e-5
  return config
